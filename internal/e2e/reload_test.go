package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// reloadProxyConfig: admin %[1]s, listener %[2]s, the route's cluster
// %[3]s, clusters a at %[4]s and b at %[5]s.
const reloadProxyConfig = `
node: {id: reload-e2e, cluster: e2e}
admin: {address: "%[1]s"}
drain_timeout: 2s
listeners:
- name: main
  address: %[2]s
  filter_chains:
  - http_connection_manager:
      stat_prefix: main
      route_config: {virtual_hosts: [{name: v, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: %[3]s}}]}]}
clusters:
- {name: a, endpoints: [{address: "%[4]s"}]}
- {name: b, endpoints: [{address: "%[5]s"}]}
`

func textServer(t *testing.T, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// reloadFixture is a proxy started with --config and two upstreams.
type reloadFixture struct {
	p                 *proc
	url, admin        string
	adminAddr, listen string
	a, b              string
}

func (f *reloadFixture) config(cluster string) []byte {
	return fmt.Appendf(nil, reloadProxyConfig, f.adminAddr, f.listen, cluster, f.a, f.b)
}

// waitBody waits until the proxy answers body.
func (f *reloadFixture) waitBody(t *testing.T, body string) {
	t.Helper()
	eventually(t, "proxy answers "+body, func() (bool, string) {
		resp, err := client.Get(f.url + "/")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b) == body, string(b)
	})
}

// waitStat waits until the admin /stats line name reads value.
func (f *reloadFixture) waitStat(t *testing.T, name string, value int) {
	t.Helper()
	want := fmt.Sprintf("%s: %d", name, value)
	eventually(t, want, func() (bool, string) {
		_, stats := get(t, f.admin+"/stats?filter="+name, nil)
		return strings.Contains(stats, want), stats
	})
}

func newReloadFixture(t *testing.T) *reloadFixture {
	ports := freePorts(t, 2)
	return &reloadFixture{adminAddr: addr(ports[0]), listen: addr(ports[1]), admin: "http://" + addr(ports[0]),
		url: "http://" + addr(ports[1]), a: textServer(t, "A"), b: textServer(t, "B")}
}

// TestReloadOnSIGHUP: the real binary reloads its --config file on SIGHUP;
// a bad file is rejected (the old configuration keeps serving), counted,
// and shown in /config_dump.
func TestReloadOnSIGHUP(t *testing.T) {
	f := newReloadFixture(t)
	cfg := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(cfg, f.config("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.p = start(t, "proxy", "proxy", "--config", cfg, "--watch-interval", "0")
	waitReady(t, f.p, f.admin+"/ready")
	f.waitBody(t, "A")

	if err := os.WriteFile(cfg, f.config("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.p.cmd.Process.Signal(syscall.SIGHUP)
	f.waitStat(t, "server.config_reload_success", 1)
	f.waitBody(t, "B")

	bad := strings.Replace(string(f.config("a")), "stat_prefix: main", "stat_prefix: main\n      bogus: 1", 1)
	if err := os.WriteFile(cfg, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	f.p.cmd.Process.Signal(syscall.SIGHUP)
	f.waitStat(t, "server.config_reload_failed", 1)
	f.waitBody(t, "B")
	_, dump := get(t, f.admin+"/config_dump", nil)
	for _, want := range []string{"cluster: b", "last_reload:", "result: failure", "bogus: line 11: unknown field", "generation: 1"} {
		if !strings.Contains(dump, want) {
			t.Errorf("/config_dump lacks %q:\n%s", want, dump)
		}
	}
	if !strings.Contains(f.p.out.String(), "configuration reload rejected") {
		t.Errorf("the rejection was not logged:\n%s", f.p.out)
	}
	f.p.stop(t)
}

// TestReloadOnFileChange: with --watch-interval the proxy follows a
// Kubernetes ConfigMap-style update (the file is a symlink through a
// ..data symlink that is swapped atomically to a new directory).
func TestReloadOnFileChange(t *testing.T) {
	f := newReloadFixture(t)
	dir := t.TempDir()
	publish := func(version string, content []byte) {
		t.Helper()
		vdir := filepath.Join(dir, "..v"+version)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(vdir, "proxy.yaml"), content, 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink("..v"+version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("1", f.config("a"))
	cfg := filepath.Join(dir, "proxy.yaml")
	if err := os.Symlink(filepath.Join("..data", "proxy.yaml"), cfg); err != nil {
		t.Fatal(err)
	}
	f.p = start(t, "proxy", "proxy", "--config", cfg, "--watch-interval", "50ms")
	waitReady(t, f.p, f.admin+"/ready")
	f.waitBody(t, "A")
	publish("2", f.config("b"))
	f.waitBody(t, "B")
	f.waitStat(t, "server.config_reload_success", 1)
	// A rejected content is not retried while it stays the same.
	publish("3", []byte("listeners: [\n"))
	f.waitStat(t, "server.config_reload_failed", 1)
	f.waitBody(t, "B")
	publish("4", f.config("a"))
	f.waitBody(t, "A")
	f.waitStat(t, "server.config_reload_success", 2)
	f.waitStat(t, "server.config_reload_failed", 1)
	f.p.stop(t)
}
