package router

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/upstream"
)

// RetryBudget is optionally implemented by Upstreams: the cluster's
// max_retries circuit breaker. Every true TryAcquireRetry is matched by one
// ReleaseRetry when that retry's attempt ends.
type RetryBudget interface {
	TryAcquireRetry(cluster string) bool
	ReleaseRetry(cluster string)
}

// retry conditions, as bits.
const (
	retry5xx uint32 = 1 << iota
	retryGatewayError
	retryReset
	retryConnectFailure
	retry4xx
	retryStatusCodes
	retryRefusedStream
	retryGRPCCancelled
	retryGRPCDeadlineExceeded
	retryGRPCInternal
	retryGRPCResourceExhausted
	retryGRPCUnavailable
)

var retryOnBits = map[string]uint32{
	"5xx": retry5xx, "gateway-error": retryGatewayError, "reset": retryReset, "connect-failure": retryConnectFailure,
	"retriable-4xx": retry4xx, "retriable-status-codes": retryStatusCodes, "refused-stream": retryRefusedStream,
	"cancelled": retryGRPCCancelled, "deadline-exceeded": retryGRPCDeadlineExceeded, "internal": retryGRPCInternal,
	"resource-exhausted": retryGRPCResourceExhausted, "unavailable": retryGRPCUnavailable,
}

// retryPolicy is a compiled config.RetryPolicy.
type retryPolicy struct {
	on            uint32
	numRetries    int
	perTryTimeout time.Duration
	statusCodes   []int
	base, max     time.Duration
	resetHeaders  []config.ResetHeader
	resetMax      time.Duration
	bufferLimit   int
}

func compileRetryPolicy(p *config.RetryPolicy) *retryPolicy {
	if p == nil {
		return nil
	}
	rp := &retryPolicy{numRetries: 1, perTryTimeout: p.PerTryTimeout.D(), statusCodes: p.RetriableStatusCodes,
		base: p.RetryBackOff.BaseInterval.D(), max: p.RetryBackOff.MaxInterval.D(), bufferLimit: p.PerRequestBufferLimitBytes}
	on := p.RetryOn
	if on == "" {
		on = config.DefaultRetryOn
	}
	for _, c := range strings.Split(on, ",") {
		rp.on |= retryOnBits[strings.TrimSpace(c)]
	}
	if p.NumRetries != nil {
		rp.numRetries = int(*p.NumRetries)
	}
	if rp.base <= 0 {
		rp.base = config.DefaultRetryBaseInterval
	}
	if rp.max < rp.base {
		rp.max = 10 * rp.base
	}
	if rp.bufferLimit <= 0 {
		rp.bufferLimit = config.DefaultRetryBufferLimitBytes
	}
	if rl := p.RateLimitedRetryBackOff; rl != nil {
		rp.resetHeaders = rl.ResetHeaders
		rp.resetMax = rl.MaxInterval.D()
		if rp.resetMax <= 0 {
			rp.resetMax = config.DefaultRateLimitedMaxInterval
		}
	}
	return rp
}

// retriableError reports whether a failure to get response headers is
// retried under the policy.
func (p *retryPolicy) retriableError(err error) bool {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch {
		case ue.Flag.Has(filter.UpstreamConnectionFailure):
			return p.on&(retryConnectFailure|retry5xx|retryGatewayError) != 0
		case ue.Flag.Has(filter.UpstreamOverflow), ue.Flag.Has(filter.NoClusterFound), ue.Flag.Has(filter.NoHealthyUpstream):
			return false
		}
	}
	return p.on&(retryReset|retry5xx|retryGatewayError|retryRefusedStream) != 0
}

// retriableResponse reports whether response headers are retried.
func (p *retryPolicy) retriableResponse(h *filter.HeaderMap) bool {
	code, _ := strconv.Atoi(h.Status())
	switch {
	case code >= 500 && p.on&retry5xx != 0:
		return true
	case (code == 502 || code == 503 || code == 504) && p.on&retryGatewayError != 0:
		return true
	case code == 409 && p.on&retry4xx != 0:
		return true
	case p.on&retryStatusCodes != 0:
		for _, c := range p.statusCodes {
			if c == code {
				return true
			}
		}
	}
	if gs, ok := h.Get("grpc-status"); ok {
		switch gs {
		case "1":
			return p.on&retryGRPCCancelled != 0
		case "4":
			return p.on&retryGRPCDeadlineExceeded != 0
		case "13":
			return p.on&retryGRPCInternal != 0
		case "8":
			return p.on&retryGRPCResourceExhausted != 0
		case "14":
			return p.on&retryGRPCUnavailable != 0
		}
	}
	return false
}

// backoff is the fully jittered exponential back-off before retry n (1-based).
func (p *retryPolicy) backoff(n int) time.Duration {
	ceil := p.base << (n - 1)
	if ceil > p.max || ceil <= 0 {
		ceil = p.max
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// resetDelay reads the upstream's reset headers; ok is false when none
// is present or parseable.
func (p *retryPolicy) resetDelay(h *filter.HeaderMap, now time.Time) (time.Duration, bool) {
	for _, rh := range p.resetHeaders {
		v, ok := h.Get(strings.ToLower(rh.Name))
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch rh.Format {
		case "UNIX_TIMESTAMP":
			if ts, err := strconv.ParseInt(v, 10, 64); err == nil {
				d := time.Unix(ts, 0).Sub(now)
				if d < 0 {
					d = 0
				}
				return d, true
			}
		default: // SECONDS, or an HTTP date as Retry-After allows
			if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
				return time.Duration(secs) * time.Second, true
			}
			if t, err := http.ParseTime(v); err == nil {
				d := t.Sub(now)
				if d < 0 {
					d = 0
				}
				return d, true
			}
		}
	}
	return 0, false
}

// retrier is the request side of a stream whose route retries: the body
// sent so far is kept for replay, and writes go to the current attempt.
type retrier struct {
	p *retryPolicy
	// wmu serialises writes to the upstream with opening an attempt (and
	// replaying into it); mu guards the fields below.
	wmu      sync.Mutex
	mu       sync.Mutex
	headers  *filter.HeaderMap
	body     []byte
	trailers *filter.HeaderMap
	reqDone  bool
	overflow bool
	stream   upstream.Stream
	failed   bool // the current attempt's stream refused a write
}

// decodeData keeps data for replay and writes it to the current attempt.
func (r *retrier) decodeData(data []byte, end bool) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.Lock()
	if !r.overflow {
		if len(r.body)+len(data) > r.p.bufferLimit {
			r.overflow, r.body = true, nil
		} else {
			r.body = append(r.body, data...)
		}
	}
	r.reqDone = r.reqDone || end
	s := r.stream
	r.mu.Unlock()
	if s != nil {
		if err := s.WriteData(data, end); err != nil {
			r.mu.Lock()
			r.failed = true
			r.mu.Unlock()
		}
	}
}

func (r *retrier) decodeTrailers(t *filter.HeaderMap) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.Lock()
	r.trailers, r.reqDone = t, true
	s := r.stream
	r.mu.Unlock()
	if s != nil {
		if err := s.WriteTrailers(t); err != nil {
			r.mu.Lock()
			r.failed = true
			r.mu.Unlock()
		}
	}
}

// open starts an attempt: a new upstream stream with the headers and
// everything the request sent so far. first is the initial attempt, which
// needs no replay buffer.
func (f *Filter) openAttempt(ctx context.Context, first bool) (upstream.Stream, error) {
	r := f.retry
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.Lock()
	if !first && r.overflow {
		r.mu.Unlock()
		return nil, errNoReplay
	}
	body, trailers, done := r.body, r.trailers, r.reqDone
	r.mu.Unlock()
	info := f.cb.StreamInfo()
	opts := upstream.StreamOptions{Protocol: info.Protocol, Info: info, Upgrade: r.headers.Has("upgrade"),
		SendWithRead: true}
	if len(f.entry.hashPolicies) > 0 {
		opts.LB = f.entry.hashKey(r.headers, info)
	}
	s, err := f.r.upstreams.NewStream(ctx, f.entry.cluster, r.headers, done && len(body) == 0 && trailers == nil, opts)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		err = s.WriteData(body, done && trailers == nil)
	}
	if err == nil && trailers != nil {
		err = s.WriteTrailers(trailers)
	}
	if err != nil {
		s.Reset()
		return nil, err
	}
	r.mu.Lock()
	r.stream, r.failed = s, false
	r.mu.Unlock()
	f.markSent(done)
	return s, nil
}

var errNoReplay = errors.New("router: request body too large to replay")

func (f *Filter) dropAttempt(s upstream.Stream) {
	r := f.retry
	r.wmu.Lock()
	r.mu.Lock()
	if r.stream == s {
		r.stream = nil
	}
	r.mu.Unlock()
	r.wmu.Unlock()
	s.Reset()
}

// pumpRetry is runRetry on a goroutine of its own.
func (f *Filter) pumpRetry() {
	f.runRetry()
	f.rs.done <- struct{}{}
}

// runRetry runs attempts until one's response goes downstream or the
// policy gives up, then pumps that response as pump does.
func (f *Filter) runRetry() {
	p := f.retry.p
	budget, _ := f.r.upstreams.(RetryBudget)
	cluster := f.entry.cluster
	held := false // a retry budget unit is held for the current attempt
	release := func() {
		if held {
			budget.ReleaseRetry(cluster)
			held = false
		}
	}
	defer release()
	retries := 0
	var lastErr error
	var lastHeaders *filter.HeaderMap
	var lastStream upstream.Stream
	var lastEnd bool
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Decide whether and when to retry.
			exhausted := retries >= p.numRetries
			if !exhausted && budget != nil {
				if held = budget.TryAcquireRetry(cluster); !held {
					exhausted = true // max_retries overflow: give up as is
				}
			} else if exhausted && p.numRetries > 0 {
				f.cb.SetResponseFlag(filter.UpstreamRetryLimitExceeded)
			}
			wait := p.backoff(retries + 1)
			if lastHeaders != nil && len(p.resetHeaders) > 0 {
				if d, ok := p.resetDelay(lastHeaders, time.Now()); ok {
					if d > p.resetMax {
						exhausted = true
						release()
					}
					wait = d
				}
			}
			if exhausted {
				break
			}
			retries++
			if lastStream != nil {
				f.dropAttempt(lastStream)
				lastStream, lastHeaders = nil, nil
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-f.ctx.Done():
				t.Stop()
				release()
				f.fail(f.ctx.Err())
				return
			}
		}
		actx, cancel := f.ctx, context.CancelFunc(func() {})
		if p.perTryTimeout > 0 {
			actx, cancel = context.WithTimeout(f.ctx, p.perTryTimeout)
		}
		s, err := f.openAttempt(actx, attempt == 0)
		if err != nil {
			cancel()
			if errors.Is(err, errNoReplay) || f.ctx.Err() != nil || !p.retriableError(err) {
				release()
				f.fail(firstNonNil(lastErr, err))
				return
			}
			lastErr, lastHeaders = err, nil
			release()
			continue
		}
		h, end, err := s.ReadHeaders(actx)
		cancel()
		if err != nil {
			f.dropAttempt(s)
			if f.ctx.Err() != nil || !p.retriableError(err) {
				release()
				f.fail(err)
				return
			}
			lastErr, lastHeaders = err, nil
			release()
			continue
		}
		if p.retriableResponse(h) {
			lastStream, lastHeaders, lastEnd, lastErr = s, h, end, nil
			release()
			continue
		}
		lastStream, lastHeaders, lastEnd = s, h, end
		break
	}
	release()
	if lastStream == nil {
		f.fail(lastErr)
		return
	}
	f.stream = lastStream
	f.rs.setStream(lastStream)
	f.forward(lastHeaders, lastEnd)
}

func firstNonNil(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
