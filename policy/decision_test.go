package policy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

func TestReferencedAttributesEncoding(t *testing.T) {
	d := &Decision{Referenced: []Reference{
		{Name: attributes.RequestHeaders, MapKey: "x-user", Present: true},
		{Name: attributes.RequestHeaders, MapKey: ":authority", Present: false},
		{Name: attributes.RequestMethod, Present: true},
		{Name: "custom.attr", Present: false},
		{Name: attributes.SourceLabels, MapKey: attributes.GlobalDictionary[0], Present: true},
	}}
	ra := d.ReferencedAttributes(attributes.GlobalWordCount())
	dec, err := attributes.NewWordDecoder(attributes.GlobalWordCount(), ra.Words)
	if err != nil {
		t.Fatal(err)
	}
	if len(ra.AttributeMatches) != len(d.Referenced) {
		t.Fatalf("%d matches for %d references", len(ra.AttributeMatches), len(d.Referenced))
	}
	for i, m := range ra.AttributeMatches {
		r := d.Referenced[i]
		name, err := dec.Word(m.Name)
		if err != nil || name != r.Name {
			t.Errorf("match %d: name %q (%v), want %q", i, name, err, r.Name)
		}
		wantCond := mixerv1.ReferencedAttributes_ABSENCE
		if r.Present {
			wantCond = mixerv1.ReferencedAttributes_EXACT
		}
		if m.Condition != wantCond {
			t.Errorf("match %d: condition %v, want %v", i, m.Condition, wantCond)
		}
		if r.MapKey == "" {
			if m.MapKey != 0 {
				t.Errorf("match %d: map_key %d for a whole attribute", i, m.MapKey)
			}
			continue
		}
		if m.MapKey == 0 {
			t.Errorf("match %d: map_key 0 (no key) for key %q", i, r.MapKey)
		}
		key, err := dec.Word(m.MapKey)
		if err != nil || key != r.MapKey {
			t.Errorf("match %d: map key %q (%v), want %q", i, key, err, r.MapKey)
		}
	}
	// A peer that knows no global words gets every word locally.
	ra = d.ReferencedAttributes(0)
	for _, m := range ra.AttributeMatches {
		if m.Name >= 0 || m.MapKey > 0 {
			t.Errorf("global index used for a peer without a dictionary: %+v", m)
		}
	}
	// The message survives the wire.
	b, err := proto.Marshal(ra)
	if err != nil {
		t.Fatal(err)
	}
	var back mixerv1.ReferencedAttributes
	if err := proto.Unmarshal(b, &back); err != nil || !proto.Equal(&back, ra) {
		t.Errorf("round trip: %v", err)
	}
}

func TestRouteDirective(t *testing.T) {
	op := func(name, value string, o mixerv1.HeaderOperation_Operation) *mixerv1.HeaderOperation {
		return &mixerv1.HeaderOperation{Name: name, Value: value, Operation: o}
	}
	tests := []struct {
		name string
		d    Decision
		want *mixerv1.RouteDirective
	}{
		{"plain allow", Decision{Allowed: true}, nil},
		{"plain deny", Decision{}, nil},
		{"allow with headers", Decision{
			Allowed:                true,
			Headers:                []HeaderValue{{"x-tags", "a"}, {"X-Tags", "b"}, {"x-tenant", "acme"}},
			RequestHeadersToRemove: []string{"x-api-key"},
			ResponseHeadersToAdd:   []HeaderValue{{"x-checked-by", "remora"}},
		}, &mixerv1.RouteDirective{
			RequestHeaderOperations: []*mixerv1.HeaderOperation{
				op("x-tags", "a", mixerv1.HeaderOperation_REPLACE),
				op("X-Tags", "b", mixerv1.HeaderOperation_APPEND),
				op("x-tenant", "acme", mixerv1.HeaderOperation_REPLACE),
				op("x-api-key", "", mixerv1.HeaderOperation_REMOVE),
			},
			ResponseHeaderOperations: []*mixerv1.HeaderOperation{op("x-checked-by", "remora", mixerv1.HeaderOperation_APPEND)},
		}},
		{"deny with status, body and headers", Decision{
			HTTPStatus: 401, Body: "no\n", Headers: []HeaderValue{{"www-authenticate", "ApiKey"}},
			ResponseHeadersToAdd: []HeaderValue{{"ignored", "on deny"}},
		}, &mixerv1.RouteDirective{
			ResponseHeaderOperations: []*mixerv1.HeaderOperation{op("www-authenticate", "ApiKey", mixerv1.HeaderOperation_REPLACE)},
			DirectResponseCode:       401,
			DirectResponseBody:       "no\n",
		}},
		{"deny with body only is a 403", Decision{Body: "no"}, &mixerv1.RouteDirective{DirectResponseCode: 403, DirectResponseBody: "no"}},
		{"allow ignores status", Decision{Allowed: true, HTTPStatus: 201}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.d.RouteDirective()
			if (got == nil) != (tt.want == nil) || got != nil && !proto.Equal(got, tt.want) {
				t.Errorf("RouteDirective() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecisionLog(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	off := false
	e := newTestEngine(t, Config{
		Modules:     map[string]string{"m.rego": allowGET},
		Watch:       &off,
		DecisionLog: DecisionLogConfig{Enabled: true, MaxPerSecond: 2, QueueSize: 100},
	}, Options{Logger: zap.New(core)})
	bag := httpBag("GET", "/x", map[string]string{"authorization": "Bearer secret-token"})
	var ids []string
	for range 20 {
		ids = append(ids, mustEval(t, e, bag).ID)
	}
	e.Close() // flushes the queue
	entries := logs.FilterLoggerName("policy.decision").All()
	// A burst of 2, refilled at 2/s: 20 evaluations within half a second
	// log 2 or 3 entries and drop the rest.
	if len(entries) < 2 || len(entries) > 3 {
		t.Fatalf("%d decision log entries, want 2 or 3 (the rate limit)", len(entries))
	}
	if got := testutil.ToFloat64(e.metrics.droppedRate); int(got) != 20-len(entries) {
		t.Errorf("dropped by rate = %v, want %d", got, 20-len(entries))
	}
	seen := map[string]bool{}
	for i, en := range entries {
		f := en.ContextMap()
		if f["decision_id"] != ids[i] || f["allowed"] != true || f[attributes.RequestPath] != "/x" {
			t.Errorf("entry %d: %v", i, f)
		}
		if seen[f["decision_id"].(string)] {
			t.Errorf("duplicate decision id %v", f["decision_id"])
		}
		seen[f["decision_id"].(string)] = true
		for k, v := range f {
			if s, ok := v.(string); ok && strings.Contains(s, "secret-token") {
				t.Errorf("entry %d leaks a header in %s", i, k)
			}
		}
	}
}

func TestDecisionLogQueueBound(t *testing.T) {
	// A logger that blocks until released fills the queue.
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	core := blockingCore{Core: zapcore.NewNopCore(), release: release, blocked: blocked}
	var dropped sync.Map
	l := newDecisionLog(zap.New(core), DecisionLogConfig{SampleRate: 1, MaxPerSecond: 1000, QueueSize: 2},
		func(reason string) { v, _ := dropped.LoadOrStore(reason, new(int)); *v.(*int)++ })
	now := time.Now()
	l.offer(logEntry{id: "1", at: now})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-blocked: // the writer holds entry 1
	case <-ctx.Done():
		t.Fatal("writer never started")
	}
	for i := range 5 {
		l.offer(logEntry{id: string(rune('2' + i)), at: now})
	}
	close(release)
	l.close()
	v, ok := dropped.Load("queue")
	if !ok || *v.(*int) != 3 {
		t.Errorf("dropped by queue = %v, want 3", v)
	}
}

// blockingCore blocks every write until release is closed.
type blockingCore struct {
	zapcore.Core
	release <-chan struct{}
	blocked chan<- struct{}
}

func (c blockingCore) Enabled(zapcore.Level) bool { return true }

func (c blockingCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return ce.AddCore(e, c)
}

func (c blockingCore) Write(zapcore.Entry, []zapcore.Field) error {
	select {
	case c.blocked <- struct{}{}:
	default:
	}
	<-c.release
	return nil
}

func TestDecisionLogTokenBucket(t *testing.T) {
	var rate, queue int
	core, logs := observer.New(zap.InfoLevel)
	l := newDecisionLog(zap.New(core), DecisionLogConfig{SampleRate: 1, MaxPerSecond: 2, QueueSize: 100},
		func(reason string) {
			if reason == "rate" {
				rate++
			} else {
				queue++
			}
		})
	t0 := l.lastFill
	for i, at := range []time.Duration{0, 0, 0, 500 * time.Millisecond, 400 * time.Millisecond, 10 * time.Second, 10 * time.Second, 10 * time.Second} {
		l.offer(logEntry{id: string(rune('a' + i)), at: t0.Add(at)})
	}
	l.close()
	var ids []string
	for _, e := range logs.All() {
		ids = append(ids, e.ContextMap()["decision_id"].(string))
	}
	// a, b: the burst; c: dropped; d: half a second refills one; e: earlier
	// than d, no refill, dropped; f, g: refilled to the burst; h: dropped.
	if got := strings.Join(ids, ""); got != "abdfg" || rate != 3 || queue != 0 {
		t.Errorf("logged %q, dropped rate=%d queue=%d; want \"abdfg\", 3, 0", got, rate, queue)
	}
}
