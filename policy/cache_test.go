package policy

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/config"
)

// fakeClock is a settable clock for the decision cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cacheCounts returns the cache's hits and misses so far.
func cacheCounts(e *Engine) (hits, misses float64) {
	return testutil.ToFloat64(e.metrics.cacheHit), testutil.ToFloat64(e.metrics.cacheMiss)
}

// TestDecisionCacheMatchesEvaluation checks that the cache never changes a
// decision: for every example policy, random bags get from a caching
// engine exactly what an engine that evaluates everything answers, while
// the cache does answer some of them.
func TestDecisionCacheMatchesEvaluation(t *testing.T) {
	policies := map[string]Config{
		"default": DefaultConfig(),
		"rbac":    {Paths: []string{"testdata/rbac"}},
		"jwt":     {Paths: []string{"testdata/jwt"}},
		"object":  {Paths: []string{"testdata/object"}},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	reader := hs256(t, "k", map[string]any{"role": "reader"})
	admin := hs256(t, "k", map[string]any{"role": "admin"})
	for name, cfg := range policies {
		t.Run(name, func(t *testing.T) {
			off := false
			cfg.Watch = &off
			cached := newTestEngine(t, cfg, Options{})
			cfg.DecisionCache.Disabled = true
			plain := newTestEngine(t, cfg, Options{})
			if plain.current.Load().cache != nil {
				t.Fatal("disabled cache built")
			}
			bags := make([]attributes.Bag, 20)
			for i := range bags {
				bags[i] = randomBag(rng, reader, admin)
			}
			for range 400 {
				b := bags[rng.IntN(len(bags))]
				got, want := mustEval(t, cached, b), mustEval(t, plain, b)
				if !sameDecision(got, want) {
					t.Fatalf("cached decision differs:\nbag:\n%s\ngot  %+v\nwant %+v", b, got, want)
				}
				if got.ID == "" {
					t.Fatal("a decision without an ID")
				}
			}
			if hits, _ := cacheCounts(cached); hits == 0 {
				t.Error("no cache hit on repeated bags")
			}
		})
	}
}

func TestDecisionCacheIDsDistinct(t *testing.T) {
	e := moduleEngineCfg(t, `package envoy.authz
default allow := false
allow if input.attributes.request.http.method == "GET"
`, nil)
	bag := mixerBagFor("GET", "/", nil)
	seen := map[string]bool{}
	for range 5 {
		d := mustEval(t, e, bag)
		if seen[d.ID] {
			t.Fatalf("decision ID %s reused", d.ID)
		}
		seen[d.ID] = true
	}
	if hits, misses := cacheCounts(e); hits != 4 || misses != 1 {
		t.Fatalf("hits %v misses %v, want 4 and 1", hits, misses)
	}
}

// moduleEngineCfg serves one module with the given clock and edits cfg.
func moduleEngineCfg(t *testing.T, module string, now func() time.Time, edit ...func(*Config)) *Engine {
	t.Helper()
	off := false
	cfg := Config{Modules: map[string]string{"p.rego": module}, Watch: &off}
	for _, f := range edit {
		f(&cfg)
	}
	return newTestEngine(t, cfg, Options{Now: now, Registry: prometheus.NewRegistry()})
}

func TestDecisionCacheValidity(t *testing.T) {
	const boolPolicy = `package envoy.authz
default allow := false
allow if input.attributes.request.http.method == "GET"
`
	get, post := mixerBagFor("GET", "/", nil), mixerBagFor("POST", "/", nil)
	tests := []struct {
		name   string
		module string
		edit   func(*Config)
		// steps: a bag to evaluate, a clock advance before it, and
		// whether the cache must answer it.
		steps []cacheStep
	}{
		{
			name: "hit until ttl", module: boolPolicy,
			edit: func(c *Config) { c.DecisionCache.TTL = config.Duration(10 * time.Second) },
			steps: []cacheStep{{bag: get}, {bag: get, hit: true}, {bag: get, wait: 9 * time.Second, hit: true},
				{bag: get, wait: time.Second}, {bag: get, hit: true}},
		},
		{
			name: "valid_duration shorter than ttl", module: boolPolicy,
			edit:  func(c *Config) { c.ValidDuration = config.Duration(2 * time.Second) },
			steps: []cacheStep{{bag: get}, {bag: get, wait: time.Second, hit: true}, {bag: get, wait: time.Second}},
		},
		{
			name: "valid_use_count", module: boolPolicy,
			edit: func(c *Config) { c.ValidUseCount = 2 },
			steps: []cacheStep{{bag: get}, {bag: get, hit: true}, {bag: get, hit: true}, {bag: get},
				{bag: get, hit: true}},
		},
		{
			name: "keys differ", module: boolPolicy,
			steps: []cacheStep{{bag: get}, {bag: post}, {bag: get, hit: true}, {bag: post, hit: true}},
		},
		{
			name: "decision not cacheable", module: `package envoy.authz
allow := {"allowed": true, "cacheable": false}
`,
			steps: []cacheStep{{bag: get}, {bag: get}},
		},
		{
			name: "decision valid for 0 uses", module: `package envoy.authz
allow := {"allowed": true, "valid_use_count": 0}
`,
			steps: []cacheStep{{bag: get}, {bag: get}},
		},
		{
			name: "decision valid_duration", module: `package envoy.authz
allow := {"allowed": true, "valid_duration": "1s"}
`,
			steps: []cacheStep{{bag: get}, {bag: get, hit: true}, {bag: get, wait: time.Second}},
		},
		{
			name: "disabled", module: boolPolicy,
			edit:  func(c *Config) { c.DecisionCache.Disabled = true },
			steps: []cacheStep{{bag: get}, {bag: get}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
			var edits []func(*Config)
			if tt.edit != nil {
				edits = append(edits, tt.edit)
			}
			e := moduleEngineCfg(t, tt.module, clock.now, edits...)
			for i, s := range tt.steps {
				clock.advance(s.wait)
				h0, _ := cacheCounts(e)
				mustEval(t, e, s.bag)
				h1, _ := cacheCounts(e)
				if hit := h1 > h0; hit != s.hit {
					t.Fatalf("step %d: hit %v, want %v", i, hit, s.hit)
				}
			}
		})
	}
}

type cacheStep struct {
	bag  attributes.Bag
	wait time.Duration
	hit  bool
}

func TestDecisionCacheNotCacheablePolicy(t *testing.T) {
	e := moduleEngineCfg(t, `package envoy.authz
allow if time.now_ns() > 0
`, nil)
	if e.current.Load().cache != nil {
		t.Fatal("a non-cacheable policy got a decision cache")
	}
	bag := mixerBagFor("GET", "/", nil)
	mustEval(t, e, bag)
	mustEval(t, e, bag)
	if hits, misses := cacheCounts(e); hits != 0 || misses != 0 {
		t.Fatalf("non-cacheable policy looked up the cache: hits %v misses %v", hits, misses)
	}
}

func TestDecisionCacheBound(t *testing.T) {
	e := moduleEngineCfg(t, `package envoy.authz
allow if input.attributes.request.http.path != "/deny"
`, nil, func(c *Config) { c.DecisionCache.MaxEntries = 32 })
	for i := range 500 {
		mustEval(t, e, mixerBagFor("GET", "/p"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), nil))
	}
	n := e.current.Load().cache.len()
	if n > 32 || n == 0 {
		t.Fatalf("%d entries, want 1..32", n)
	}
	if got := testutil.ToFloat64(e.metrics.cacheEntries); int(got) != n {
		t.Fatalf("entries gauge %v, want %d", got, n)
	}
	if testutil.ToFloat64(e.metrics.cacheEvicted) == 0 {
		t.Fatal("no eviction counted")
	}
}

func TestDecisionCacheReloadStartsEmpty(t *testing.T) {
	e := moduleEngineCfg(t, `package envoy.authz
allow if input.attributes.request.http.method == "GET"
`, nil)
	bag := mixerBagFor("GET", "/", nil)
	mustEval(t, e, bag)
	if e.current.Load().cache.len() != 1 {
		t.Fatal("decision not cached")
	}
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.current.Load().cache.len(); n != 0 {
		t.Fatalf("reloaded policy starts with %d cached decisions", n)
	}
	h0, _ := cacheCounts(e)
	mustEval(t, e, bag)
	if h1, _ := cacheCounts(e); h1 != h0 {
		t.Fatal("reloaded policy answered from the old cache")
	}
}

// TestDecisionCacheConcurrent hammers one engine from several goroutines
// (run with -race).
func TestDecisionCacheConcurrent(t *testing.T) {
	e := moduleEngineCfg(t, `package envoy.authz
allow if input.attributes.request.http.method == "GET"
`, nil, func(c *Config) { c.DecisionCache.MaxEntries = 16; c.ValidUseCount = 3 })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				m := []string{"GET", "POST"}[(g+i)%2]
				d, err := e.Eval(context.Background(), mixerBagFor(m, "/"+string(rune('a'+i%20)), nil))
				if err != nil || d.Allowed != (m == "GET") {
					t.Errorf("Eval %s: %+v %v", m, d, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
