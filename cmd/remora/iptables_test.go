package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/internal/capture"
)

// TestIPTablesDryRun prints the default install script: it is the one
// internal/capture's golden file holds for the mode this machine allows
// (iptables-restore installed or not).
func TestIPTablesDryRun(t *testing.T) {
	golden := "../../internal/capture/testdata/default.individual.sh"
	if capture.RestoreAvailable(false) {
		golden = "../../internal/capture/testdata/default.restore.sh"
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"iptables", "--dry-run"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stdout.String() != string(want) {
		t.Fatalf("dry run:\n%s\nwant:\n%s", stdout.String(), want)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"iptables", "--dry-run", "--cleanup", "--ipv6"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "ip6tables -t nat -X REMORA_OUTPUT 2>/dev/null || true\n") {
		t.Fatalf("cleanup dry run:\n%s", stdout.String())
	}
}

func TestIPTablesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy-port", "99999"}, `--proxy-port: "99999" is not a port (1-65535)`},
		{[]string{"--exclude-outbound-cidrs", "10.0.0.0/40"}, `--exclude-outbound-cidrs: "10.0.0.0/40" is not a CIDR`},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"iptables", "--dry-run"}, tc.args...), &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, tc.want)
			}
		})
	}
}
