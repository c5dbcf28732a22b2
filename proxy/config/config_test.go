package config_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/remora-mesh/remora/proxy/config"
	_ "github.com/remora-mesh/remora/proxy/filters/headermutation"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestParseErrorsGolden parses each testdata/errors/*.yaml and compares the
// error (every problem, one per line, with its field path) with its
// .golden file.
func TestParseErrorsGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/errors/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, perr := Parse(data)
			if perr == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			got := []byte(perr.Error() + "\n")
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("errors differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// TestValidConfigsRoundTrip parses every valid example, prints it and
// parses it again: the printed forms must be identical.
func TestValidConfigsRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			b, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			b2, err := Parse(out)
			if err != nil {
				t.Fatalf("printed config does not parse: %v\n%s", err, out)
			}
			out2, _ := Marshal(b2)
			if !bytes.Equal(out, out2) {
				t.Fatalf("round trip differs:\n%s\n---\n%s", out, out2)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	b, err := Parse([]byte(`
listeners:
- name: l
  address: 127.0.0.1:0
  filter_chains:
  - tls: {cert_file: c, key_file: k}
    http_connection_manager:
      route_config:
        virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: c}}, {match: {prefix: /r}, redirect: {}}]}]
clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	l := b.Listeners[0]
	h := l.FilterChains[0].HTTPConnectionManager
	r := h.RouteConfig.VirtualHosts[0].Routes
	checks := []struct {
		name string
		ok   bool
	}{
		{"admin", b.Admin.Address == DefaultAdminAddress},
		{"drain", b.DrainTimeout.D() == DefaultDrainTimeout},
		{"direction", l.Direction == "outbound"},
		{"buffer", l.PerConnectionBufferLimitBytes == 1<<20},
		{"alpn", len(l.FilterChains[0].TLS.ALPN) == 2},
		{"headers kb", h.MaxRequestHeadersKB == 60},
		{"idle", h.StreamIdleTimeout.D() == DefaultStreamIdleTimeout},
		{"request id", *h.GenerateRequestID},
		{"codec", h.CodecType == "AUTO"},
		{"route timeout", r[0].Route.Timeout.D() == DefaultRouteTimeout},
		{"case", *r[0].Match.CaseSensitive},
		{"redirect code", r[1].Redirect.ResponseCode == 301},
		{"cluster", b.Clusters[0].ConnectTimeout.D().Seconds() == 5},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("default %s not applied", c.name)
		}
	}
}

// FuzzParse checks that no input makes Parse panic, and that whatever
// parses also prints and parses again.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/errors"} {
		files, _ := filepath.Glob(dir + "/*.yaml")
		for _, file := range files {
			data, _ := os.ReadFile(file)
			f.Add(data)
		}
	}
	f.Add([]byte("listeners: [{name: a, filter_chains: [{http_connection_manager: {route_config: {virtual_hosts: [{domains: ['*']}]}}}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		out, err := Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("printed config does not parse: %v\n%s", err, out)
		}
	})
}
