package accesslog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestSet(t *testing.T) {
	dir := t.TempDir()
	src := fmt.Sprintf(`
access_log:
- type: file
  name: all
  config: {path: %[1]s/all.log, format: "%%REQ(X-REQUEST-ID)%%\n"}
- type: file
  name: errors
  filter: {status_code_filter: {comparison: {op: GE, value: 500}}}
  config: {path: %[1]s/errors.json, json_format: {id: "%%REQ(X-REQUEST-ID)%%", code: "%%RESPONSE_CODE%%"}}
`, dir)
	cfgs, err := decodeConfigs(t, src)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewMetrics(prometheus.NewRegistry())
	s, err := NewSet(cfgs, "access_log", Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ok, bad := idStream("ok"), idStream("bad")
	bad.ResponseCode = 503
	s.Log(ok)
	s.Log(bad)
	ctx := testCtx(t)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(readLines(t, filepath.Join(dir, "all.log")), ","); got != "ok,bad" {
		t.Errorf("all.log = %q", got)
	}
	if got := strings.Join(readLines(t, filepath.Join(dir, "errors.json")), ","); got != `{"code":"503","id":"bad"}` {
		t.Errorf("errors.json = %q", got)
	}
	if err := os.Rename(filepath.Join(dir, "all.log"), filepath.Join(dir, "all.log.1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reopen(); err != nil {
		t.Fatal(err)
	}
	s.Log(ok)
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readLines(t, filepath.Join(dir, "all.log")); len(got) != 1 || got[0] != "ok" {
		t.Errorf("reopened all.log = %q", got)
	}
}

func TestSetErrors(t *testing.T) {
	dir := t.TempDir()
	cfgs, err := decodeConfigs(t, fmt.Sprintf(`
access_log:
- type: file
  config: {path: %s/ok.log}
- type: file
  config: {format: "%%NOPE%%"}
- type: grpc
  config: {address: "127.0.0.1:1"}
`, dir))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewSet(cfgs, "listeners[0].access_log", Options{})
	for _, want := range []string{
		"listeners[0].access_log[1].config.path: required",
		"listeners[0].access_log[1].config.format: format: position 0: unknown operator %NOPE%",
		"listeners[0].access_log[2].config.log_name: required",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\ndoes not contain %q", err, want)
		}
	}
	// A sink that fails to start closes the ones already built (the leak
	// check in TestMain would catch a running writer).
	cfgs, _ = decodeConfigs(t, fmt.Sprintf(`
access_log:
- type: file
  config: {path: %[1]s/ok.log}
- type: file
  config: {path: %[1]s/missing/x.log}
`, dir))
	if _, err := NewSet(cfgs, "access_log", Options{}); err == nil || !strings.Contains(err.Error(), "access_log[1]: accesslog: file:") {
		t.Errorf("NewSet = %v", err)
	}
}
