package router

import (
	"errors"
	"net/http"
	"testing"
	"time"

	icfg "github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/upstream"
)

func TestRetryPolicy(t *testing.T) {
	n := uint32(3)
	p := compileRetryPolicy(&config.RetryPolicy{RetryOn: "gateway-error,connect-failure,retriable-status-codes,unavailable",
		NumRetries: &n, RetriableStatusCodes: []int{409},
		RetryBackOff: config.RetryBackOff{BaseInterval: icfg.Duration(10 * time.Millisecond), MaxInterval: icfg.Duration(25 * time.Millisecond)},
		RateLimitedRetryBackOff: &config.RateLimitedRetryBackOff{ResetHeaders: []config.ResetHeader{
			{Name: "Retry-After", Format: "SECONDS"}, {Name: "X-RateLimit-Reset", Format: "UNIX_TIMESTAMP"}}}})
	status := func(code string, kv ...string) *filter.HeaderMap {
		h := filter.NewHeaderMap(filter.HeaderField{Name: ":status", Value: code})
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	for _, tt := range []struct {
		h    *filter.HeaderMap
		want bool
	}{
		{status("503"), true}, {status("500"), false}, {status("409"), true}, {status("200"), false},
		{status("200", "grpc-status", "14"), true}, {status("200", "grpc-status", "13"), false},
	} {
		if got := p.retriableResponse(tt.h); got != tt.want {
			t.Errorf("retriableResponse(%v) = %v, want %v", tt.h.Fields(), got, tt.want)
		}
	}
	if !p.retriableError(&upstream.Error{Flag: filter.UpstreamConnectionFailure}) {
		t.Error("connect failure not retried")
	}
	if p.retriableError(&upstream.Error{Flag: filter.UpstreamOverflow}) {
		t.Error("overflow retried")
	}
	if !p.retriableError(errors.New("reset")) {
		t.Error("a reset not retried under gateway-error (Envoy retries resets under 5xx, gateway-error and reset)")
	}
	if compileRetryPolicy(&config.RetryPolicy{RetryOn: "retriable-status-codes"}).retriableError(errors.New("reset")) {
		t.Error("a reset retried under retriable-status-codes only")
	}
	for i := 1; i <= 6; i++ {
		if d := p.backoff(i); d < 0 || d > 25*time.Millisecond {
			t.Errorf("backoff(%d) = %v out of [0, 25ms]", i, d)
		}
	}
	now := time.Unix(1000, 0)
	for _, tt := range []struct {
		h    *filter.HeaderMap
		want time.Duration
		ok   bool
	}{
		{status("429", "retry-after", "3"), 3 * time.Second, true},
		{status("429", "retry-after", now.Add(2*time.Second).UTC().Format(http.TimeFormat)), 2 * time.Second, true},
		{status("429", "x-ratelimit-reset", "1005"), 5 * time.Second, true},
		{status("429", "retry-after", "soon"), 0, false},
		{status("429"), 0, false},
	} {
		d, ok := p.resetDelay(tt.h, now)
		if d != tt.want || ok != tt.ok {
			t.Errorf("resetDelay(%v) = %v %v, want %v %v", tt.h.Fields(), d, ok, tt.want, tt.ok)
		}
	}
}
