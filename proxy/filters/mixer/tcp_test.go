package mixer_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filters/mixer"
	"github.com/remora-mesh/remora/proxy/server"
)

func yamlNode(t testing.TB, s string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	if len(n.Content) == 0 {
		return nil
	}
	return n.Content[0]
}

func TestParseTCPConfig(t *testing.T) {
	cfg, err := mixer.ParseTCPConfig(yamlNode(t, `{server: {address: "127.0.0.1:1"}, identity: {uid: u}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ReportInterval.D() != 10*time.Second {
		t.Errorf("report_interval default %v, want 10s", cfg.ReportInterval)
	}
	for _, tt := range []struct{ name, in, want string }{
		{"none", ``, "mixer: no configuration"},
		{"unknown field", `{server: {address: "127.0.0.1:1"}, bogus: 1}`, "bogus"},
		{"missing address", `{server: {}}`, "server.address: required"},
		{"negative interval", `{server: {address: "127.0.0.1:1"}, report_interval: -1s}`, "report_interval"},
		{"bad interval", `{server: {address: "127.0.0.1:1"}, report_interval: often}`, "report_interval"},
		{"forward attributes", `{server: {address: "127.0.0.1:1"}, forward_attributes: {a: b}}`, "forward_attributes: not used on TCP connections"},
		{"ignore forwarded", `{server: {address: "127.0.0.1:1"}, ignore_forwarded_attributes: true}`, "ignore_forwarded_attributes: not used"},
		{"typed attribute", `{server: {address: "127.0.0.1:1"}, mixer_attributes: {destination.port: eighty}}`, `destination.port is INT64`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mixer.ParseTCPConfig(yamlNode(t, tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestTCPConfigPath checks that a bad mixer entry of a tcp_proxy is
// reported under its field path when the sidecar is built (what `remora
// validate` does).
func TestTCPConfigPath(t *testing.T) {
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
admin: {address: "-"}
listeners:
- name: l
  address: 127.0.0.1:0
  filter_chains:
  - tcp_proxy: {cluster: c, mixer: %s}
clusters: [{name: c, endpoints: [{address: 127.0.0.1:1}]}]
`, `{server: {}}`)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, server.Options{})
	if err == nil {
		s.Close()
		t.Fatal("config accepted")
	}
	if want := "listeners[0].filter_chains[0].tcp_proxy: tcpproxy: mixer: server.address: required"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want %q", err, want)
	}
}

// FuzzParseTCPConfig checks that no input makes the parser panic.
func FuzzParseTCPConfig(f *testing.F) {
	f.Add(`{server: {address: "127.0.0.1:1"}, report_interval: 1s}`)
	f.Add(`{server: {address: "127.0.0.1:1"}, mixer_attributes: {destination.port: 1, source.labels: {a: b}}}`)
	f.Add(`[1, 2]`)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		var n yaml.Node
		if yaml.Unmarshal([]byte(s), &n) != nil || len(n.Content) == 0 {
			return
		}
		_, _ = mixer.ParseTCPConfig(n.Content[0])
	})
}
