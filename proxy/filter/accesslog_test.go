package filter

import (
	"sync"
	"testing"
)

type countingLogFactory struct{ typ string }

func (f countingLogFactory) Type() string { return f.typ }
func (f countingLogFactory) NewHandler(AccessLogEntry, Env) (AccessLogHandler, error) {
	return AccessLogFunc(func(*StreamInfo) {}), nil
}

// registerTestType registers the test's type once per process, so that the
// test can run several times (-count).
var registerTestType = sync.OnceFunc(func() { RegisterAccessLog(countingLogFactory{"test_registry"}) })

func TestAccessLogRegistry(t *testing.T) {
	registerTestType()
	if _, ok := LookupAccessLog("test_registry"); !ok {
		t.Fatal("registered type not found")
	}
	if _, ok := LookupAccessLog("missing"); ok {
		t.Fatal("unknown type found")
	}
	found := false
	for _, n := range AccessLogNames() {
		found = found || n == "test_registry"
	}
	if !found {
		t.Fatal("AccessLogNames lacks the type")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	RegisterAccessLog(countingLogFactory{"test_registry"})
}
