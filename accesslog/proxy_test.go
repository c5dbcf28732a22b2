package accesslog_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/config"
	_ "github.com/remora-mesh/remora/proxy/filters/all"
	"github.com/remora-mesh/remora/proxy/server"
)

// TestProxyFileAccessLog runs the real proxy with a file access log in
// Envoy's default format and a JSON one, and checks the lines.
func TestProxyFileAccessLog(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	defer be.Close()
	dir := t.TempDir()
	text, jsonPath := filepath.Join(dir, "access.log"), filepath.Join(dir, "access.json")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      access_log:
      - {type: file, config: {path: %s}}
      - {type: file, config: {path: %s, typed_json_format: {code: "%%RESPONSE_CODE%%", path: "%%REQ(:PATH)%%", flags: "%%RESPONSE_FLAGS%%"}}}
      route_config:
        virtual_hosts:
        - {name: all, domains: ["*"], routes: [{match: {prefix: /app}, route: {cluster: backend}}]}
clusters:
- {name: backend, endpoints: [{address: %s}]}
`, text, jsonPath, be.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.ListenerAddr("main").String()
	for _, p := range []string{"/app/1", "/missing"} {
		req, _ := http.NewRequest("GET", base+p, nil)
		req.Header.Set("User-Agent", "remora-test")
		req.Header.Set("X-Request-Id", "req-"+strings.TrimPrefix(p, "/"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Closing the proxy flushes its sinks.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, text)
	if len(lines) != 2 {
		t.Fatalf("%d lines in the text log, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /app/1 HTTP/1.1" 200 - 0 5 \d+ \S+ "127.0.0.1" "remora-test" "req-app/1" "127.0.0.1:\d+" "127.0.0.1:\d+"$`),
		regexp.MustCompile(`^\[.*\] "GET /missing HTTP/1.1" 404 NR 0 0 \d+ - "127.0.0.1" "remora-test" "req-missing" "127.0.0.1:\d+" "-"$`),
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d\n%s\ndoes not match\n%s", i, lines[i], re)
		}
	}
	jl := readLines(t, jsonPath)
	if len(jl) != 2 || jl[0] != `{"code":200,"flags":"-","path":"/app/1"}` || jl[1] != `{"code":404,"flags":"NR","path":"/missing"}` {
		t.Fatalf("json log:\n%s", strings.Join(jl, "\n"))
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestProxyReopenLogs: logrotate renames the file, POST /reopen_logs
// reopens it, and every line is in exactly one of the two files.
func TestProxyReopenLogs(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer be.Close()
	path := filepath.Join(t.TempDir(), "access.log")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      access_log: [{name: main-log, type: file, config: {path: %s, format: "%%REQ(:PATH)%%\n"}}]
      route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: backend}}]}]}
clusters:
- {name: backend, endpoints: [{address: %s}]}
`, path, be.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.ListenerAddr("main").String()
	get := func(p string) {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for i := range 3 {
		get(fmt.Sprintf("/before/%d", i))
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+s.AdminAddr().String()+"/reopen_logs", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /reopen_logs: %v %v", resp, err)
	}
	resp.Body.Close()
	for i := range 2 {
		get(fmt.Sprintf("/after/%d", i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	old, cur := readLines(t, path+".1"), readLines(t, path)
	if strings.Join(old, ",") != "/before/0,/before/1,/before/2" || strings.Join(cur, ",") != "/after/0,/after/1" {
		t.Fatalf("rotated file %v, new file %v", old, cur)
	}
}
