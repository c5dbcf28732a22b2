package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/code"
)

// TestReloadReadiness: a failed reload keeps the previous policy serving
// and ready, with the failure in /readyz; a good reload swaps the policy.
func TestReloadReadiness(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "authz.rego")
	write := func(src string) {
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(rbacPolicy)
	watch := false
	var cfg Config
	cfg.Policy.Paths = []string{dir}
	cfg.Policy.Watch = &watch
	ts := start(t, cfg, Options{}, nil)
	check := func() code.Code {
		t.Helper()
		resp, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/public/x", headers()))
		if err != nil {
			t.Fatal(err)
		}
		return code.Code(resp.GetPrecondition().GetStatus().GetCode())
	}
	if c := check(); c != code.Code_OK {
		t.Fatalf("initial policy: %v", c)
	}

	write("package envoy.authz\n\nallow if {\n") // syntax error
	if err := ts.srv.engine.Reload(ctxT(t)); err == nil {
		t.Fatal("reload of a broken policy succeeded")
	}
	if c, body := httpGet(t, ts.monURL+"/readyz"); c != 200 || !strings.Contains(body, "last reload failed") || !strings.Contains(body, "authz.rego") {
		t.Fatalf("/readyz after a failed reload: %d %q", c, body)
	}
	if c := check(); c != code.Code_OK {
		t.Fatalf("previous policy should keep serving: %v", c)
	}

	write("package envoy.authz\n\ndefault allow := false\n")
	if err := ts.srv.engine.Reload(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if c, body := httpGet(t, ts.monURL+"/readyz"); c != 200 || strings.Contains(body, "failed") {
		t.Fatalf("/readyz after a good reload: %d %q", c, body)
	}
	if c := check(); c != code.Code_PERMISSION_DENIED {
		t.Fatalf("reloaded deny-all policy: %v", c)
	}
}
