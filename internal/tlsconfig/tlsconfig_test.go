package tlsconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		c        Client
		protocol string
		wantErr  string
	}{
		{"plaintext", Client{}, "insecure", ""},
		{"system roots", Client{ServerName: "mixer"}, "tls", ""},
		{"missing ca", Client{CAFile: filepath.Join(dir, "nope.pem")}, "", "ca_file"},
		{"garbage ca", Client{CAFile: garbage}, "", "no PEM certificates"},
		{"cert without key", Client{CertFile: garbage}, "", "go together"},
		{"bad key pair", Client{CertFile: garbage, KeyFile: garbage}, "", "client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := tt.c.Credentials()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || creds.Info().SecurityProtocol != tt.protocol {
				t.Fatalf("got %v %v, want %s", creds, err, tt.protocol)
			}
		})
	}
}
