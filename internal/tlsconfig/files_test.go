package tlsconfig

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-mesh/remora/internal/testpki"
)

func TestNewClientFilesErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    Client
		want string
	}{
		{"cert without key", Client{CertFile: garbage}, "tls: cert_file and key_file go together"},
		{"missing ca", Client{CAFile: filepath.Join(dir, "nope.pem")}, "tls: ca_file: stat "},
		{"garbage ca", Client{CAFile: garbage}, "no PEM certificates"},
		{"garbage cert", Client{CertFile: garbage, KeyFile: garbage}, "tls: cert_file/key_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClientFiles(tt.c, 0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestClientFilesReload(t *testing.T) {
	pki := testpki.New(t, "spiffe://a")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	put := func(from, to string, mod time.Time) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(to, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	put(pki.ClientCertFile, cert, now)
	put(pki.ClientKeyFile, key, now)
	f, err := NewClientFiles(Client{CAFile: pki.CAFile, CertFile: cert, KeyFile: key}, tls.VersionTLS13)
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.Config()
	if err != nil || first.MinVersion != tls.VersionTLS13 || first.RootCAs == nil {
		t.Fatalf("%v %+v", err, first)
	}
	if again, _ := f.Config(); again != first {
		t.Fatal("unchanged files were read again")
	}
	// A broken rewrite keeps the previous configuration and reports it.
	if err := os.WriteFile(cert, []byte("broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(cert, now.Add(time.Minute), now.Add(time.Minute))
	if got, err := f.Config(); err == nil || got != first {
		t.Fatalf("broken reload: %v, config replaced %v", err, got != first)
	}
	// A good rotation is picked up.
	newCert, newKey := pki.IssueClient("rotated", "spiffe://b")
	put(newCert, cert, now.Add(2*time.Minute))
	put(newKey, key, now.Add(2*time.Minute))
	got, err := f.Config()
	if err != nil || got == first {
		t.Fatalf("rotation not picked up: %v", err)
	}
	if !strings.Contains(string(got.Certificates[0].Leaf.URIs[0].String()), "spiffe://b") {
		t.Fatalf("leaf %v", got.Certificates[0].Leaf.URIs)
	}
}
