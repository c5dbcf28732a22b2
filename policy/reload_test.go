package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/remora-mesh/remora/internal/config"
)

// reloads collects the watcher's reload results for a test.
type reloads chan error

func (r reloads) hook(err error) {
	select {
	case r <- err:
	default: // a test that stopped listening must not block the watcher
	}
}

// next waits for the next reload result.
func (r reloads) next(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case err := <-r:
		return err
	case <-ctx.Done():
		t.Fatal("no reload within 5s")
		return nil
	}
}

// until waits for a reload for which ok returns true.
func (r reloads) until(t *testing.T, ok func(error) bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		select {
		case err := <-r:
			if ok(err) {
				return err
			}
		case <-ctx.Done():
			t.Fatal("no matching reload within 5s")
			return nil
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write then rename, as deployment tools do, so that the watcher never
	// reads a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const allowGET = `package envoy.authz
default allow := false
allow if input.attributes.request.http.method == "GET"
`

const allowPOST = `package envoy.authz
default allow := false
allow if input.attributes.request.http.method == "POST"
`

func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "authz", "policy.rego")
	writeFile(t, file, allowGET)
	reg := prometheus.NewPedanticRegistry()
	events := make(reloads, 16)
	e := newTestEngine(t, Config{Paths: []string{dir}, PollInterval: config.Duration(5 * time.Millisecond)},
		Options{Registry: reg, OnReload: events.hook})
	if err := events.next(t); err != nil { // the initial load
		t.Fatal(err)
	}

	get, post := httpBag("GET", "/", nil), httpBag("POST", "/", nil)
	if !mustEval(t, e, get).Allowed || mustEval(t, e, post).Allowed {
		t.Fatal("initial policy: want GET allowed, POST denied")
	}

	// A changed policy is picked up.
	writeFile(t, file, allowPOST)
	if err := events.next(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if mustEval(t, e, get).Allowed || !mustEval(t, e, post).Allowed {
		t.Fatal("after reload: want POST allowed, GET denied")
	}

	// A broken policy is reported and the previous one keeps serving.
	writeFile(t, file, "package envoy.authz\nallow if {\n  input.attributes.request.http.method ==\n}\n")
	err := events.next(t)
	if err == nil || !strings.Contains(err.Error(), "policy.rego:4") {
		t.Fatalf("broken policy: err = %v, want one naming policy.rego:4", err)
	}
	if !mustEval(t, e, post).Allowed {
		t.Fatal("broken policy replaced the serving one")
	}
	ready, detail := e.Ready()
	if !ready || !strings.Contains(detail, "last reload failed") || !strings.Contains(detail, "policy.rego:4") {
		t.Errorf("Ready() = %v, %q", ready, detail)
	}
	if got := testutil.ToFloat64(e.metrics.reloadFailed); got != 1 {
		t.Errorf("failed reloads = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.metrics.reloadOK); got != 2 {
		t.Errorf("successful reloads = %v, want 2", got)
	}

	// A data document added beside it, and the policy fixed to use it.
	writeFile(t, filepath.Join(dir, "authz", "methods", "data.yaml"), "allowed: [PUT]\n")
	writeFile(t, file, "package envoy.authz\nallow if input.attributes.request.http.method in data.authz.methods.allowed\n")
	events.until(t, func(err error) bool { return err == nil && mustEval(t, e, httpBag("PUT", "/", nil)).Allowed })
	if ready, detail := e.Ready(); !ready || strings.Contains(detail, "failed") {
		t.Errorf("Ready() after fix = %v, %q", ready, detail)
	}

	// Removing the whole directory is a failure; the policy keeps serving.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := events.next(t); err == nil {
		t.Fatal("removed directory: want a reload error")
	}
	if !mustEval(t, e, httpBag("PUT", "/", nil)).Allowed {
		t.Fatal("policy lost after its directory was removed")
	}
}

func TestReloadUnchangedIsQuiet(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), allowGET)
	off := false
	e := newTestEngine(t, Config{Paths: []string{dir}, Watch: &off}, Options{})
	if err := e.reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.metrics.reloadOK); got != 1 {
		t.Errorf("an unchanged policy was recompiled: %v loads", got)
	}
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(e.metrics.reloadOK); got != 2 {
		t.Errorf("forced reload: %v loads, want 2", got)
	}
}

// buildBundle returns a gzipped tarball holding files.
func buildBundle(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBundles(t *testing.T) {
	v1Policy := `package envoy.authz
default allow := false
allow if input.attributes.request.http.headers["x-team"] in data.teams.allowed
`
	v0Policy := `package envoy.authz
default allow = false
allow { input.attributes.request.http.headers["x-team"] == data.teams.allowed[_] }
`
	tests := []struct {
		name  string
		files map[string]string
		err   string
	}{
		{"v1 with data", map[string]string{
			"/.manifest":              `{"revision": "r1", "roots": ["envoy", "teams"]}`,
			"/envoy/authz/authz.rego": v1Policy,
			"/teams/data.json":        `{"allowed": ["blue", "green"]}`,
		}, ""},
		{"v0 with yaml data", map[string]string{
			"/envoy/authz/authz.rego": v0Policy,
			"/teams/data.yaml":        "allowed: [blue, green]\n",
		}, ""},
		{"v0 declared in the manifest", map[string]string{
			"/.manifest":              `{"rego_version": 0}`,
			"/envoy/authz/authz.rego": v0Policy,
			"/teams/data.json":        `{"allowed": ["blue", "green"]}`,
		}, ""},
		{"broken module", map[string]string{
			"/envoy/authz/authz.rego": "package envoy.authz\nallow if {\n",
		}, "authz.rego:3"},
		{"bad data", map[string]string{
			"/envoy/authz/authz.rego": v1Policy,
			"/teams/data.json":        `{"allowed": [`,
		}, "teams/data.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bundle.tar.gz")
			if err := os.WriteFile(path, buildBundle(t, tt.files), 0o644); err != nil {
				t.Fatal(err)
			}
			off := false
			e, err := New(context.Background(), Config{Paths: []string{path}, Watch: &off}, Options{})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("New: err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer e.Close()
			for team, want := range map[string]bool{"blue": true, "green": true, "red": false} {
				d := mustEval(t, e, httpBag("GET", "/", map[string]string{"x-team": team}))
				if d.Allowed != want {
					t.Errorf("team %s: allowed = %v, want %v", team, d.Allowed, want)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, content)
		return p
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"missing path", Config{Paths: []string{filepath.Join(dir, "nope")}}, []string{"nope: stat"}},
		{"parse error names file and line", Config{Paths: []string{write("a/bad.rego", "package x\n\np if {\n")}},
			[]string{"bad.rego:4", "rego_parse_error"}},
		{"compile error names file and line", Config{Paths: []string{write("b/undef.rego", "package x\n\np if undefined_fn(1)\n")}},
			[]string{"undef.rego:3", "undefined function undefined_fn"}},
		{"v1 only rejects v0", Config{Paths: []string{write("c/v0.rego", "package x\np { true }\n")}, RegoVersion: RegoVersionV1},
			[]string{"v0.rego:2", "rego_parse_error"}},
		{"bad json data", Config{Paths: []string{write("d/p.rego", "package x\np := 1\n"), write("d/data.json", "{")}},
			[]string{"data.json"}},
		{"conflicting data", Config{Paths: []string{write("e/p.rego", "package x\np := 1\n"), write("e/x/a.json", `{"k": 1}`), write("e/x/b.json", `{"k": 2}`)}},
			[]string{"data conflict at data.k"}},
		{"non-object data at the root", Config{Paths: []string{write("f/p.rego", "package x\np := 1\n"), write("f/data.json", `[1]`)}},
			[]string{"must be an object"}},
		{"no modules", Config{Paths: []string{write("g/data.json", `{"a": 1}`)}}, []string{"no Rego modules found"}},
		{"unsupported file", Config{Paths: []string{write("h/p.txt", "hi")}}, []string{"unsupported file type"}},
		{"bad bundle", Config{Paths: []string{write("i/b.tar.gz", "not a tarball")}}, []string{"bundle", "b.tar.gz"}},
		{"every problem reported", Config{Paths: []string{write("j/one.rego", "package x\np if {\n"), write("j/two.rego", "package y\nq if {\n")}},
			[]string{"one.rego:3", "two.rego:3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off := false
			tt.cfg.Watch = &off
			reg := prometheus.NewPedanticRegistry()
			_, err := New(context.Background(), tt.cfg, Options{Registry: reg})
			if err == nil {
				t.Fatal("New: want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Errorf("error %q lacks the policy: prefix", err)
			}
			// A failed New leaves nothing registered.
			if n, _ := reg.Gather(); len(n) != 0 {
				t.Errorf("failed New left %d metric families registered", len(n))
			}
		})
	}
}

func TestDataDocumentsPlacement(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), `package envoy.authz
allow if {
	data.a.b.x == 1
	data.a.c.y == "two"
	data.top == true
}
`)
	writeFile(t, filepath.Join(dir, "a", "b", "data.json"), `{"x": 1}`)
	writeFile(t, filepath.Join(dir, "a", "c", "whatever.yml"), "y: two\n")
	writeFile(t, filepath.Join(dir, "data.json"), `{"top": true}`)
	writeFile(t, filepath.Join(dir, ".hidden", "data.json"), `{"top": false}`)
	writeFile(t, filepath.Join(dir, "..data", "x.rego"), "package broken\np if {")
	off := false
	e := newTestEngine(t, Config{Paths: []string{dir}, Watch: &off}, Options{})
	if !mustEval(t, e, httpBag("GET", "/", nil)).Allowed {
		t.Error("data documents not placed at their directories")
	}
}

func TestRegoVersions(t *testing.T) {
	v0 := "package envoy.authz\nallow { input.attributes.request.http.method == \"GET\" }\n"
	v1 := "package envoy.authz\nallow if input.attributes.request.http.method == \"GET\"\n"
	tests := []struct {
		version, src string
		ok           bool
	}{
		{RegoVersionAuto, v0, true},
		{RegoVersionAuto, v1, true},
		{RegoVersionV1, v1, true},
		{RegoVersionV1, v0, false},
		{RegoVersionV0, v0, true},
		{RegoVersionV0, v1, false},
	}
	for _, tt := range tests {
		name := tt.version + "/" + map[bool]string{true: "v0 source", false: "v1 source"}[tt.src == v0]
		t.Run(name, func(t *testing.T) {
			off := false
			e, err := New(context.Background(), Config{Modules: map[string]string{"m.rego": tt.src}, RegoVersion: tt.version, Watch: &off}, Options{})
			if !tt.ok {
				if err == nil {
					e.Close()
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if !mustEval(t, e, httpBag("GET", "/", nil)).Allowed || mustEval(t, e, httpBag("PUT", "/", nil)).Allowed {
				t.Error("wrong decisions")
			}
		})
	}
	// v0 and v1 modules compile together in auto mode.
	off := false
	e := newTestEngine(t, Config{Modules: map[string]string{
		"a.rego": "package envoy.authz\nallow { data.lib.ok }\n",
		"b.rego": "package lib\nok if input.attributes.request.http.method == \"GET\"\n",
	}, Watch: &off}, Options{})
	if !mustEval(t, e, httpBag("GET", "/", nil)).Allowed {
		t.Error("mixed v0/v1 modules: GET denied")
	}
}

// TestEvalDuringReloads evaluates from several goroutines while the policy
// is swapped back and forth; run with -race.
func TestEvalDuringReloads(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.rego")
	writeFile(t, file, allowGET)
	off := false
	e := newTestEngine(t, Config{Paths: []string{dir}, Watch: &off}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			bag := httpBag("GET", "/", nil)
			for ctx.Err() == nil {
				if _, err := e.Eval(ctx, bag); err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range 10 {
		writeFile(t, file, []string{allowPOST, allowGET}[i%2])
		if err := e.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("Eval during reload: %v", err)
		}
	}
	if !mustEval(t, e, httpBag("GET", "/", nil)).Allowed {
		t.Error("last policy (GET allowed) not serving")
	}
}

func TestBundleHotReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	bundle := func(team string) string {
		return string(buildBundle(t, map[string]string{
			"/envoy/authz/authz.rego": "package envoy.authz\nallow if input.attributes.request.http.headers[\"x-team\"] == data.team\n",
			"/data.json":              `{"team": "` + team + `"}`,
		}))
	}
	writeFile(t, path, bundle("blue"))
	events := make(reloads, 16)
	e := newTestEngine(t, Config{Paths: []string{path}, PollInterval: config.Duration(5 * time.Millisecond)}, Options{OnReload: events.hook})
	if err := events.next(t); err != nil {
		t.Fatal(err)
	}
	blue := httpBag("GET", "/", map[string]string{"x-team": "blue"})
	red := httpBag("GET", "/", map[string]string{"x-team": "red"})
	if !mustEval(t, e, blue).Allowed || mustEval(t, e, red).Allowed {
		t.Fatal("initial bundle: want blue allowed, red denied")
	}
	writeFile(t, path, bundle("red"))
	if err := events.next(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if mustEval(t, e, blue).Allowed || !mustEval(t, e, red).Allowed {
		t.Fatal("new bundle: want red allowed, blue denied")
	}
}

func TestReadyNamesWhyNotCacheable(t *testing.T) {
	e := moduleEngine(t, "package envoy.authz\nallow if time.now_ns() > 0\n")
	if _, detail := e.Ready(); !strings.Contains(detail, "not cacheable (calls the non-deterministic built-in time.now_ns)") {
		t.Errorf("Ready detail %q does not say why the policy is not cacheable", detail)
	}
	if d := mustEval(t, e, httpBag("GET", "/", nil)); d.Cacheable || d.Referenced != nil {
		t.Errorf("decision of a non-deterministic policy: cacheable=%v referenced=%v", d.Cacheable, d.Referenced)
	}
	if got := testutil.ToFloat64(e.metrics.cacheable); got != 0 {
		t.Errorf("remora_policy_cacheable = %v, want 0", got)
	}
}
