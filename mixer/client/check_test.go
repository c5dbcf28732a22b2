package client

import (
	"context"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// ref is one referenced attribute a test policy declares.
type ref struct {
	name, key string
	cond      mixerv1.ReferencedAttributes_Condition
	regex     string
}

// policy answers Checks like a server would: decide computes the decision
// from the decoded bag, refs are the attributes it reads.
func policy(t testing.TB, refs []ref, validFor time.Duration, uses int32, decide func(attributes.Bag) codes.Code) func(*mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	return func(req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
		bag, err := attributes.Decompress(req.Attributes, req.GlobalWordCount)
		if err != nil {
			t.Errorf("server: %v", err)
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		enc := attributes.NewWordEncoder(req.GlobalWordCount)
		ra := &mixerv1.ReferencedAttributes{}
		for _, r := range refs {
			cond := r.cond
			if cond == 0 { // present → EXACT, absent → ABSENCE, as a server derives them
				v, ok := bag.Get(r.name)
				if ok && r.key != "" {
					_, ok = v.StringMapValue().Get(r.key)
				}
				cond = mixerv1.ReferencedAttributes_ABSENCE
				if ok {
					cond = mixerv1.ReferencedAttributes_EXACT
				}
			}
			m := &mixerv1.ReferencedAttributes_AttributeMatch{Name: enc.Index(r.name), Condition: cond, Regex: r.regex}
			if r.key != "" {
				m.MapKey = enc.Index(r.key)
			}
			ra.AttributeMatches = append(ra.AttributeMatches, m)
		}
		ra.Words = enc.Words()
		return &mixerv1.CheckResponse{Precondition: &mixerv1.CheckResponse_PreconditionResult{
			Status:               &rpcstatus.Status{Code: int32(decide(bag))},
			ValidDuration:        durationpb.New(validFor),
			ValidUseCount:        uses,
			ReferencedAttributes: ra,
		}}, nil
	}
}

func request(path, user, id string) attributes.Bag {
	bd := attributes.NewBuilder(4)
	bd.Set(attributes.RequestPath, attributes.String(path))
	bd.Set(attributes.RequestID, attributes.String(id))
	hdrs := []attributes.KV{{Key: ":path", Value: path}}
	if user != "" {
		hdrs = append(hdrs, attributes.KV{Key: "x-user", Value: user})
	}
	bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.NewStringMap(hdrs)))
	return bd.Build()
}

// fakeClock is a clock tests advance by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestCheckCache(t *testing.T) {
	adminOnly := func(b attributes.Bag) codes.Code {
		h, _ := b.Get(attributes.RequestHeaders)
		if u, _ := h.StringMapValue().Get("x-user"); u == "admin" {
			return codes.OK
		}
		return codes.PermissionDenied
	}
	type step struct {
		path, user   string
		wantCode     codes.Code
		wantServer   int // server calls so far, after this step
		wantCacheHit bool
		advance      time.Duration
	}
	tests := []struct {
		name     string
		refs     []ref
		validFor time.Duration
		uses     int32
		steps    []step
	}{
		{
			name: "equal requests reach the server once", refs: []ref{{name: attributes.RequestPath}, {name: attributes.RequestHeaders, key: "x-user"}},
			validFor: time.Minute, uses: 100,
			steps: []step{
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1},
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1, wantCacheHit: true},
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1, wantCacheHit: true},
			},
		},
		{
			name: "a different referenced header value is a miss, never a wrong hit", refs: []ref{{name: attributes.RequestPath}, {name: attributes.RequestHeaders, key: "x-user"}},
			validFor: time.Minute, uses: 100,
			steps: []step{
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1},
				{path: "/a", user: "bob", wantCode: codes.PermissionDenied, wantServer: 2},
				{path: "/a", user: "", wantCode: codes.PermissionDenied, wantServer: 3},
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 3, wantCacheHit: true},
				{path: "/a", user: "bob", wantCode: codes.PermissionDenied, wantServer: 3, wantCacheHit: true},
				{path: "/a", user: "", wantCode: codes.PermissionDenied, wantServer: 3, wantCacheHit: true},
				{path: "/b", user: "admin", wantCode: codes.OK, wantServer: 4},
			},
		},
		{
			name: "expiry by use count", refs: []ref{{name: attributes.RequestHeaders, key: "x-user"}},
			validFor: time.Minute, uses: 2,
			steps: []step{
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1},
				{path: "/b", user: "admin", wantCode: codes.OK, wantServer: 1, wantCacheHit: true},
				{path: "/c", user: "admin", wantCode: codes.OK, wantServer: 1, wantCacheHit: true},
				{path: "/d", user: "admin", wantCode: codes.OK, wantServer: 2},
			},
		},
		{
			name: "expiry by duration", refs: []ref{{name: attributes.RequestHeaders, key: "x-user"}},
			validFor: 10 * time.Second, uses: 100,
			steps: []step{
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1},
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1, wantCacheHit: true, advance: 9 * time.Second},
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 2, advance: time.Second},
			},
		},
		{
			name: "not cacheable", refs: []ref{{name: attributes.RequestHeaders, key: "x-user"}},
			validFor: 0, uses: 0,
			steps: []step{
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 1},
				{path: "/a", user: "admin", wantCode: codes.OK, wantServer: 2},
			},
		},
		{
			name: "regex evaluated locally", refs: []ref{
				{name: attributes.RequestPath, cond: mixerv1.ReferencedAttributes_REGEX, regex: "^/api/"},
				{name: attributes.RequestHeaders, key: "x-user"},
			},
			validFor: time.Minute, uses: 100,
			steps: []step{
				{path: "/api/1", user: "admin", wantCode: codes.OK, wantServer: 1},
				{path: "/api/2", user: "admin", wantCode: codes.OK, wantServer: 1, wantCacheHit: true},
				{path: "/web/1", user: "admin", wantCode: codes.OK, wantServer: 2},
				{path: "/web/2", user: "admin", wantCode: codes.OK, wantServer: 2, wantCacheHit: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTestServer(t)
			srv.check = policy(t, tt.refs, tt.validFor, tt.uses, adminOnly)
			clock := &fakeClock{now: time.Unix(1e9, 0)}
			c, _ := newClient(t, srv, Config{}, clock.Now)
			for i, s := range tt.steps {
				clock.Advance(s.advance)
				r := c.Check(context.Background(), request(s.path, s.user, "id-"+string(rune('a'+i))), nil)
				if r.Status != s.wantCode || r.CacheHit != s.wantCacheHit || r.TransportErr != nil {
					t.Fatalf("step %d: got %v hit=%v err=%v, want %v hit=%v", i, r.Status, r.CacheHit, r.TransportErr, s.wantCode, s.wantCacheHit)
				}
				if n := srv.checkCount(); n != s.wantServer {
					t.Fatalf("step %d: server saw %d checks, want %d", i, n, s.wantServer)
				}
			}
		})
	}
}

func TestCheckCacheEvictsLeastRecentlyUsed(t *testing.T) {
	srv := newTestServer(t)
	srv.check = policy(t, []ref{{name: attributes.RequestPath}}, time.Minute, 100, func(attributes.Bag) codes.Code { return codes.OK })
	c, _ := newClient(t, srv, Config{Check: CheckConfig{CacheEntries: 2}}, nil)
	ctx := context.Background()
	for _, p := range []string{"/1", "/2", "/1", "/3"} { // /2 is the least recently used when /3 arrives
		c.Check(ctx, request(p, "", ""), nil)
	}
	if got := testutil.ToFloat64(c.m.cacheEvictions); got != 1 {
		t.Fatalf("evictions = %v, want 1", got)
	}
	before := srv.checkCount()
	if r := c.Check(ctx, request("/1", "", ""), nil); !r.CacheHit {
		t.Fatal("/1 was evicted")
	}
	if r := c.Check(ctx, request("/2", "", ""), nil); r.CacheHit || srv.checkCount() != before+1 {
		t.Fatal("/2 should have been evicted")
	}
	if hits, misses := testutil.ToFloat64(c.m.cacheHits), testutil.ToFloat64(c.m.cacheMisses); hits != 2 || misses != 4 {
		t.Fatalf("hits, misses = %v, %v; want 2, 4", hits, misses)
	}
}

func TestCheckRetriesWithOneDeduplicationID(t *testing.T) {
	srv := newTestServer(t)
	allow := policy(t, nil, 0, 0, func(attributes.Bag) codes.Code { return codes.OK })
	failures := 2
	srv.check = func(req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
		if failures > 0 {
			failures--
			return nil, status.Error(codes.Unavailable, "try again")
		}
		return allow(req)
	}
	c, _ := newClient(t, srv, Config{Check: CheckConfig{Retries: 2, BaseRetryWait: 1e6, MaxRetryWait: 2e6}}, nil)
	r := c.Check(context.Background(), request("/", "", ""), nil)
	if !r.Allowed() || r.TransportErr != nil {
		t.Fatalf("got %+v", r)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.checks) != 3 {
		t.Fatalf("server saw %d attempts, want 3", len(srv.checks))
	}
	for _, req := range srv.checks[1:] {
		if req.DeduplicationId != srv.checks[0].DeduplicationId || req.DeduplicationId == "" {
			t.Fatalf("deduplication ids differ across retries: %q vs %q", req.DeduplicationId, srv.checks[0].DeduplicationId)
		}
	}
	if got := testutil.ToFloat64(c.m.checkRetries); got != 2 {
		t.Fatalf("retries = %v", got)
	}
}

func TestFailPolicy(t *testing.T) {
	for _, tt := range []struct {
		policy   FailPolicy
		wantCode codes.Code
	}{{FailOpen, codes.OK}, {FailClose, codes.Unavailable}} {
		t.Run(string(tt.policy), func(t *testing.T) {
			srv := newTestServer(t)
			srv.stop() // nothing listens: every call fails fast
			c, _ := newClient(t, srv, Config{Check: CheckConfig{FailPolicy: tt.policy, Retries: 1, BaseRetryWait: 1e6, MaxRetryWait: 1e6, Timeout: 5e8}}, nil)
			r := c.Check(context.Background(), request("/", "", ""), nil)
			if r.Status != tt.wantCode || r.TransportErr == nil {
				t.Fatalf("got %v (err %v), want %v with a transport error", r.Status, r.TransportErr, tt.wantCode)
			}
			if tt.policy == FailClose && HTTPStatus(r.Status) != 503 {
				t.Fatalf("fail-close maps to %d, want 503", HTTPStatus(r.Status))
			}
		})
	}
}

func TestCheckQuota(t *testing.T) {
	srv := newTestServer(t)
	allow := policy(t, []ref{{name: attributes.RequestPath}}, time.Minute, 100, func(attributes.Bag) codes.Code { return codes.OK })
	granted := int64(1)
	srv.check = func(req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
		resp, err := allow(req)
		if err != nil || len(req.Quotas) == 0 {
			return resp, err
		}
		resp.Quotas = map[string]*mixerv1.CheckResponse_QuotaResult{}
		for name := range req.Quotas {
			q := &mixerv1.CheckResponse_QuotaResult{GrantedAmount: granted, Status: &rpcstatus.Status{}}
			if granted == 0 {
				q.Status = &rpcstatus.Status{Code: int32(codes.ResourceExhausted), Message: "rate limited"}
			}
			resp.Quotas[name] = q
		}
		return resp, nil
	}
	c, _ := newClient(t, srv, Config{}, nil)
	ctx := context.Background()
	if r := c.Check(ctx, request("/", "", ""), map[string]int64{"requestcount": 1}); !r.Allowed() {
		t.Fatalf("granted quota denied: %+v", r)
	}
	granted = 0
	r := c.Check(ctx, request("/", "", ""), map[string]int64{"requestcount": 1})
	if r.Status != codes.ResourceExhausted || r.Message != "rate limited" || HTTPStatus(r.Status) != 429 {
		t.Fatalf("exhausted quota: %+v", r)
	}
	if srv.checkCount() != 2 {
		t.Fatal("quota checks must reach the server")
	}
}

func TestNewCacheRejectsBadReferences(t *testing.T) {
	_, err := newRefSet(&mixerv1.ReferencedAttributes{AttributeMatches: []*mixerv1.ReferencedAttributes_AttributeMatch{{Name: -3}}}, 222)
	if err == nil {
		t.Fatal("a name index beyond the words was accepted")
	}
	_, err = newRefSet(&mixerv1.ReferencedAttributes{Words: []string{"a"}, AttributeMatches: []*mixerv1.ReferencedAttributes_AttributeMatch{
		{Name: -1, Condition: mixerv1.ReferencedAttributes_REGEX, Regex: "("}}}, 222)
	if err == nil {
		t.Fatal("a bad regex was accepted")
	}
	if _, err := regexp.Compile("^/api/"); err != nil {
		t.Fatal(err)
	}
}

func TestHTTPStatus(t *testing.T) {
	for c, want := range map[codes.Code]int{codes.OK: 200, codes.PermissionDenied: 403, codes.Unauthenticated: 401,
		codes.ResourceExhausted: 429, codes.Unavailable: 503, codes.Internal: 500, codes.DeadlineExceeded: 504} {
		if got := HTTPStatus(c); got != want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c, got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := Config{Check: CheckConfig{FailPolicy: "sometimes", Retries: -1, CacheEntries: -5},
		Report: ReportConfig{Encoding: "zip", MaxBatchEntries: -1}, TLS: &TLSConfig{CertFile: "c"}}
	cfg.ApplyDefaults()
	err := cfg.Validate("filters[0].mixer")
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{
		"filters[0].mixer.address: required",
		"filters[0].mixer.tls: cert_file and key_file go together",
		`filters[0].mixer.check.fail_policy: must be "open" or "close", not "sometimes"`,
		"filters[0].mixer.check.retries",
		"filters[0].mixer.check.cache_entries",
		`filters[0].mixer.report.encoding: must be "delta" or "independent", not "zip"`,
		"filters[0].mixer.report.max_batch_entries: must be at least 1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

func TestCheckCacheCoalescesConcurrentMisses(t *testing.T) {
	// An entry of a busy key expires while waiters pile up: the first
	// miss asks the server, the others wait for its answer — unless that
	// answer cannot be cached, when each asks for itself.
	const waiters = 7
	refs := []ref{{name: attributes.RequestPath}}
	allow := func(attributes.Bag) codes.Code { return codes.OK }
	tests := []struct {
		name       string
		validFor   time.Duration // of the refreshed decision
		uses       int32
		wantServer int // calls after the prime call
	}{
		{"a cacheable answer serves every waiter", time.Minute, 100, 1},
		{"an answer for the asking call only: the waiters ask for themselves", 0, 1, 1 + waiters},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t)
			clock := &fakeClock{now: time.Unix(1e9, 0)}
			s.check = policy(t, refs, time.Minute, 100, allow)
			c, _ := newClient(t, s, Config{}, clock.Now)
			ctx := context.Background()
			if r := c.Check(ctx, request("/a", "", "prime"), nil); !r.Allowed() {
				t.Fatalf("prime: %+v", r)
			}
			clock.Advance(2 * time.Minute) // the entry expires, its key stays known

			release := make(chan struct{})
			refresh := policy(t, refs, tt.validFor, tt.uses, allow)
			s.mu.Lock()
			s.check = func(req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
				<-release
				return refresh(req)
			}
			s.mu.Unlock()

			results := make(chan Result, waiters+1)
			for i := 0; i <= waiters; i++ {
				go func() { results <- c.Check(ctx, request("/a", "", strconv.Itoa(i)), nil) }()
			}
			// Release the server once every request but the leader waits.
			deadline := time.Now().Add(5 * time.Second)
			for testutil.ToFloat64(c.m.cacheCoalesced) < waiters {
				if time.Now().After(deadline) {
					close(release)
					t.Fatalf("coalesced = %v, want %d", testutil.ToFloat64(c.m.cacheCoalesced), waiters)
				}
				runtime.Gosched()
			}
			close(release)
			for i := 0; i <= waiters; i++ {
				if r := <-results; !r.Allowed() {
					t.Errorf("check %d: %+v", i, r)
				}
			}
			if got := s.checkCount() - 1; got != tt.wantServer {
				t.Errorf("server calls after the prime = %d, want %d", got, tt.wantServer)
			}
		})
	}
}
