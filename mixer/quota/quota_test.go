package quota

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/config"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newManager(t *testing.T, c *clock, cfgs ...Config) *Manager {
	t.Helper()
	for i := range cfgs {
		cfgs[i].ApplyDefaults()
	}
	m, err := New(cfgs, nil, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func bag(user, path string) attributes.Bag {
	m := map[string]attributes.Value{attributes.RequestPath: attributes.String(path)}
	if user != "" {
		m[attributes.SourcePrincipal] = attributes.String(user)
	}
	return attributes.BagOf(m)
}

func TestRollingWindow(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	m := newManager(t, c, Config{Name: "rq", MaxAmount: 3, Window: config.Duration(time.Second), Ticks: 10,
		Dimensions: map[string]string{"user": "source.principal"}})
	alloc := func(user string, amount int64, be bool) Result { return m.Alloc("rq", bag(user, "/"), amount, be) }

	if r := alloc("alice", 2, false); r.Outcome != Granted || r.Granted != 2 {
		t.Fatalf("first: %+v", r)
	}
	c.Advance(500 * time.Millisecond)
	if r := alloc("alice", 2, false); r.Outcome != Exhausted || r.Granted != 0 || !strings.Contains(r.Message, `quota "rq" exhausted: 2 of 3 used`) {
		t.Fatalf("all-or-nothing: %+v", r)
	}
	if r := alloc("alice", 2, true); r.Outcome != Partial || r.Granted != 1 {
		t.Fatalf("best effort: %+v", r)
	}
	if r := alloc("bob", 3, false); r.Outcome != Granted {
		t.Fatalf("other dimension key: %+v", r)
	}
	r := alloc("alice", 1, true)
	if r.Outcome != Exhausted || r.ValidDuration <= 0 || r.ValidDuration > 100*time.Millisecond {
		t.Fatalf("exhausted best effort: %+v", r)
	}
	// The first 2 leave the window 1s after they were charged; the later 1 stays.
	c.Advance(500 * time.Millisecond)
	if r := alloc("alice", 3, true); r.Outcome != Partial || r.Granted != 2 {
		t.Fatalf("after the first tick left: %+v", r)
	}
	c.Advance(2 * time.Second)
	if r := alloc("alice", 3, false); r.Outcome != Granted {
		t.Fatalf("after the window: %+v", r)
	}
}

func TestOverridesAndUnknown(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	m := newManager(t, c, Config{Name: "rq", MaxAmount: 1, Dimensions: map[string]string{"user": "source.principal", "path": "request.path"},
		Overrides: []Override{{Dimensions: map[string]string{"user": "vip"}, MaxAmount: 5}, {Dimensions: map[string]string{"path": "/blocked"}, MaxAmount: 0}}})
	if r := m.Alloc("rq", bag("vip", "/a"), 5, false); r.Outcome != Granted {
		t.Fatalf("override: %+v", r)
	}
	if r := m.Alloc("rq", bag("joe", "/blocked"), 1, true); r.Outcome != Exhausted {
		t.Fatalf("zero override: %+v", r)
	}
	if r := m.Alloc("nope", bag("joe", "/"), 7, false); r.Outcome != Unknown || r.Granted != 7 {
		t.Fatalf("unknown quota: %+v", r)
	}
}

func TestMaxKeysAndEviction(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	m := newManager(t, c, Config{Name: "rq", MaxAmount: 2, MaxKeys: 2, Dimensions: map[string]string{"user": "source.principal"}})
	m.Alloc("rq", bag("a", "/"), 1, false)
	m.Alloc("rq", bag("b", "/"), 1, false)
	// c and d share the overflow window.
	if r := m.Alloc("rq", bag("c", "/"), 2, false); r.Outcome != Granted {
		t.Fatalf("overflow first: %+v", r)
	}
	if r := m.Alloc("rq", bag("d", "/"), 1, false); r.Outcome != Exhausted {
		t.Fatalf("overflow shared: %+v", r)
	}
	if n := m.Keys("rq"); n != 2 {
		t.Fatalf("keys = %d", n)
	}
	c.Advance(2 * time.Second) // a and b are idle now
	if r := m.Alloc("rq", bag("e", "/"), 2, false); r.Outcome != Granted {
		t.Fatalf("after eviction: %+v", r)
	}
	if n := m.Keys("rq"); n != 1 {
		t.Fatalf("keys after eviction = %d", n)
	}
}

func TestResultProto(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	m := newManager(t, c, Config{Name: "rq", MaxAmount: 1, Dimensions: map[string]string{"user": "source.principal", "ua": "request.headers[x-custom-agent]"}})
	m.Alloc("rq", bag("alice", "/"), 1, false)
	r := m.Alloc("rq", bag("alice", "/"), 1, false)
	qr := r.Proto(attributes.GlobalWordCount())
	if qr.GetStatus().GetCode() != 8 || qr.GetGrantedAmount() != 0 {
		t.Fatalf("status %v granted %d", qr.GetStatus(), qr.GetGrantedAmount())
	}
	ra := qr.GetReferencedAttributes()
	if len(ra.GetAttributeMatches()) != 2 {
		t.Fatalf("matches: %v", ra)
	}
	conds := map[mixerv1.ReferencedAttributes_Condition]int{}
	for _, am := range ra.GetAttributeMatches() {
		conds[am.GetCondition()]++
	}
	if conds[mixerv1.ReferencedAttributes_EXACT] != 1 || conds[mixerv1.ReferencedAttributes_ABSENCE] != 1 {
		t.Fatalf("conditions: %v", ra)
	}
	if words := ra.GetWords(); len(words) != 1 || words[0] != "x-custom-agent" {
		t.Fatalf("words: %v", words)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfgs []Config
		want []string
	}{
		{"missing", []Config{{}}, []string{"quotas[0].name: required", "quotas[0].max_amount: must be positive"}},
		{"dims", []Config{{Name: "q", MaxAmount: 1, Dimensions: map[string]string{"bad-label": "x", "ok": "a[b"},
			Overrides: []Override{{Dimensions: map[string]string{"nope": "1"}}}}}, []string{
			`quotas[0].dimensions: "bad-label" is not a valid dimension label`,
			`quotas[0].dimensions.ok: "a[b" is not an attribute name`,
			`quotas[0].overrides[0].dimensions: unknown dimension "nope"`}},
		{"duplicate", []Config{{Name: "q", MaxAmount: 1}, {Name: "q", MaxAmount: 1}}, []string{`quotas[1].name: quota "q" is defined twice`}},
		{"ticks", []Config{{Name: "q", MaxAmount: 1, Ticks: 5000}}, []string{"quotas[0].ticks: must be between 1 and 1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.cfgs {
				tt.cfgs[i].ApplyDefaults()
			}
			err := ValidateAll("quotas", tt.cfgs)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}

func BenchmarkAlloc(b *testing.B) {
	cfg := Config{Name: "rq", MaxAmount: 1 << 60, Dimensions: map[string]string{"user": "source.principal"}}
	cfg.ApplyDefaults()
	m, err := New([]Config{cfg}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	bg := bag("alice", "/")
	b.ReportAllocs()
	for b.Loop() {
		m.Alloc("rq", bg, 1, false)
	}
}
