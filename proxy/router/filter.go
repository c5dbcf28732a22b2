package router

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/internal/mono"
	"github.com/remora-mesh/remora/internal/weaktimer"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/upstream"
)

// Upstreams opens streams to clusters. The proxy adapts the upstream
// cluster manager to it. NewStream returns *upstream.Error for failures
// that carry a response flag (an unknown cluster is flag NC); it must
// honour ctx's deadline while connecting and queueing. opts carries the
// downstream protocol, the stream's info and whether the request is an
// HTTP/1.1 upgrade.
type Upstreams interface {
	NewStream(ctx context.Context, cluster string, headers *filter.HeaderMap, endStream bool, opts upstream.StreamOptions) (upstream.Stream, error)
}

// TimeoutRecorder is optionally implemented by Upstreams: the router
// reports a route timeout that struck after the response headers arrived
// (those before are seen by the upstream stream itself), for the cluster's
// stats and outlier detection.
type TimeoutRecorder interface {
	RecordTimeout(cluster, host string)
}

// Router builds router filters; it is the terminal filter of every HTTP
// filter chain. It is safe for concurrent use.
type Router struct {
	upstreams Upstreams
}

// New returns a Router sending requests through u.
func New(u Upstreams) *Router { return &Router{upstreams: u} }

// NewFilter returns the router filter for one stream.
func (r *Router) NewFilter(cb filter.TerminalCallbacks) *Filter {
	f := &Filter{}
	r.InitFilter(f, cb)
	return f
}

// InitFilter readies f, which may have served an earlier stream (after
// its OnDestroy returned), for a new stream: a connection manager keeps
// one Filter per pooled stream, and the Filter keeps its per-request state
// (context, timer, pump hand-over) so that a request allocates none.
func (r *Router) InitFilter(f *Filter, cb filter.TerminalCallbacks) {
	rs := f.rs
	*f = Filter{r: r, cb: cb, rs: rs}
	if rs != nil {
		rs.inline.Store(inlineOff)
	}
}

// Filter is the router for one stream.
type Filter struct {
	filter.PassThrough
	r  *Router
	cb filter.TerminalCallbacks

	entry   *Entry
	stream  upstream.Stream
	ctx     context.Context // the upstream request's: &rs.ctx
	started bool            // a pump goroutine runs; rs.done receives its end
	failed  bool            // the request could not be sent; ignore further data
	retry   *retrier        // non-nil when the route retries
	// reqH and opts open the stream again when a pooled connection turns
	// out stale (replayable requests only).
	reqH       *filter.HeaderMap
	opts       upstream.StreamOptions
	replayable bool

	rs *reqState // made by the first request, kept with the Filter
}

// reqState is what a Filter reuses from one request to the next.
type reqState struct {
	ctx reqCtx
	// timer is the route timeout. It stays pending from request to
	// request (armed, due: mono.Now when it fires; under mu): a request
	// arms it only when none is pending early enough, and a firing before
	// the current request's deadline re-arms for the rest (onTimeout).
	// It holds the state weakly.
	timer *time.Timer
	armed bool
	due   int64
	done  chan struct{} // cap 1: a token when the pump ends
	// pump and pumpRetry are method values made once, so that starting
	// the goroutine allocates nothing.
	pump, pumpRetry func()
	// inline is the hand-over of the response pump to the goroutine that
	// delivers the request (BeginInline, RunInline): inlineOff, or
	// inlineOpen while that goroutine will run a pump, or the pump
	// DecodeHeaders left for it (inlinePump, inlineRetry).
	inline atomic.Int32

	// mu guards stream and released, and the timer's armed and due: the
	// upstream stream is released (closed or reset) exactly once, by the
	// pump when the exchange ends or by the route timeout or the stream's
	// destruction.
	mu       sync.Mutex
	stream   upstream.Stream
	released bool
}

var (
	_ filter.StreamFilter = (*Filter)(nil)
	_ filter.Destroyer    = (*Filter)(nil)
)

// state returns f's reusable request state, making it on first use.
func (f *Filter) state() *reqState {
	if f.rs == nil {
		rs := &reqState{done: make(chan struct{}, 1)}
		rs.pump, rs.pumpRetry = f.pump, f.pumpRetry
		f.rs = rs
	}
	return f.rs
}

// onTimeout runs from the route timer: it ends the request's context and
// resets its upstream stream once the deadline has passed. A firing
// armed by an earlier request re-arms for the rest of the current
// request's deadline, or rests when no request has one.
func (rs *reqState) onTimeout() {
	if rs.ctx.cancel(context.DeadlineExceeded, true) {
		rs.mu.Lock()
		rs.armed = false
		rs.mu.Unlock()
		rs.abort()
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if left, ok := rs.ctx.untilDeadline(); ok {
		rs.timer.Reset(left)
		rs.due = mono.Now() + int64(left)
		return
	}
	rs.armed = false // no request with a route timeout: rest
}

// armTimer makes the route timer fire no later than d from now.
func (rs *reqState) armTimer(d time.Duration) {
	due := mono.Now() + int64(d)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.armed && rs.due <= due {
		return // fires first and re-arms for the rest
	}
	if rs.timer == nil {
		rs.timer = weaktimer.AfterFunc(rs, d, (*reqState).onTimeout)
	} else {
		rs.timer.Reset(d)
	}
	rs.armed, rs.due = true, due
}

// abort resets the upstream stream unless it was released.
func (rs *reqState) abort() {
	rs.mu.Lock()
	s := rs.stream
	if s == nil || rs.released {
		rs.mu.Unlock()
		return
	}
	rs.released = true
	rs.mu.Unlock()
	s.Reset()
}

// setStream makes s the stream a timeout or destruction resets; if the
// context already ended, s is reset now.
func (rs *reqState) setStream(s upstream.Stream) {
	rs.mu.Lock()
	rs.stream = s
	rs.mu.Unlock()
	if rs.ctx.Err() != nil {
		rs.abort()
	}
}

// stopTimer ends the request's route timeout; the timer stays pending
// and rests when it fires.
func (rs *reqState) stopTimer() { rs.ctx.clearDeadline() }

// DecodeHeaders picks the route and opens the upstream stream.
func (f *Filter) DecodeHeaders(h *filter.HeaderMap, endStream bool) filter.Status {
	rt := f.cb.Route()
	e, _ := rt.(*Entry)
	info := f.cb.StreamInfo()
	if e == nil {
		f.failed = true
		f.cb.SendLocalReply(filter.LocalReply{Code: 404, Flag: filter.NoRouteFound, Details: "route_not_found"})
		return filter.StopIteration
	}
	f.entry = e
	info.RouteName = e.name
	switch e.kind {
	case actionDirect:
		f.failed = true
		rh := filter.NewHeaderMap()
		e.MutateResponse(rh)
		f.cb.SendLocalReply(filter.LocalReply{Code: e.direct.Status, Body: e.direct.Body, Headers: rh.Fields(), Details: "direct_response"})
		return filter.StopIteration
	case actionRedirect:
		f.failed = true
		f.cb.SendLocalReply(filter.LocalReply{Code: e.redirect.ResponseCode,
			Headers: []filter.HeaderField{{Name: "location", Value: e.redirectURL(h)}}, Details: "redirect"})
		return filter.StopIteration
	}
	if p, ok := e.rewritePath(h.Path()); ok {
		h.Set("x-envoy-original-path", h.Path())
		h.Set(filter.HeaderPath, p)
	}
	if e.hostRewrite != "" {
		h.Set(filter.HeaderAuthority, e.hostRewrite)
	}
	e.MutateRequest(h)
	info.UpstreamCluster = e.cluster

	rs := f.state()
	var deadline time.Time
	if e.timeout > 0 {
		deadline = time.Now().Add(e.timeout)
	}
	rs.ctx.reset(f.cb.Context(), deadline)
	rs.mu.Lock()
	rs.stream, rs.released = nil, false
	rs.mu.Unlock()
	f.ctx = &rs.ctx
	if e.timeout > 0 {
		rs.armTimer(e.timeout)
	}
	if e.retry != nil {
		// Attempts are opened by the pump, which may retry them.
		f.retry = &retrier{p: e.retry, headers: h, reqDone: endStream}
		f.startPump(inlineRetry)
		return filter.StopIteration
	}
	// The connection manager keeps the upgrade header only on an HTTP/1.1
	// upgrade request (WebSocket ...). A route timeout or the stream's
	// destruction resets the upstream stream, which unblocks the pump.
	f.opts = upstream.StreamOptions{Protocol: info.Protocol, Info: info, Upgrade: h.Has("upgrade"), ResetOnCancel: true,
		SendWithRead: true} // the exchange reads the response headers next
	if len(e.hashPolicies) > 0 {
		f.opts.LB = e.hashKey(h, info)
	}
	f.reqH = h
	f.replayable = endStream && !f.opts.Upgrade && replayable(h)
	s, err := f.r.upstreams.NewStream(f.ctx, e.cluster, h, endStream, f.opts)
	if err != nil && f.replayable && errors.Is(err, upstream.ErrStaleConnection) {
		// Writing to a connection the upstream had closed failed: the
		// request never reached it.
		s, err = f.reopen()
	}
	if err != nil {
		rs.stopTimer()
		f.failed = true
		f.fail(err)
		return filter.StopIteration
	}
	f.stream = s
	f.markSent(endStream)
	rs.setStream(s)
	f.startPump(inlinePump)
	return filter.StopIteration
}

// Inline hand-over states (reqState.inline).
const (
	inlineOff int32 = iota
	inlineOpen
	inlinePump
	inlineRetry
)

// startPump leaves the response pump to the goroutine that opened the
// inline window (BeginInline), or starts it on a goroutine of its own.
func (f *Filter) startPump(kind int32) {
	rs := f.rs
	if rs.inline.CompareAndSwap(inlineOpen, kind) {
		return
	}
	f.started = true
	if kind == inlineRetry {
		go rs.pumpRetry()
	} else {
		go rs.pump()
	}
}

// BeginInline tells f that the calling goroutine, which delivers the
// request (DecodeHeaders, and DecodeData when the body is already in
// memory), will call RunInline next and may run the response pump itself
// instead of a goroutine started per request. The caller must do so only
// when nothing it would otherwise do concurrently (reading more of the
// request from the downstream) has to happen while the response is
// pumped; it must make the stream's end and the downstream going away
// call Abort while RunInline runs.
func (f *Filter) BeginInline() { f.state().inline.Store(inlineOpen) }

// RunInline closes the window BeginInline opened. If DecodeHeaders left
// the response pump to the caller meanwhile (from whatever goroutine it
// ran on), RunInline runs it here and returns when the response was
// forwarded through the stream's callbacks, or the request failed. It
// reports whether it ran a pump.
func (f *Filter) RunInline() bool {
	rs := f.rs
	for {
		switch st := rs.inline.Load(); st {
		case inlinePump, inlineRetry:
			if !rs.inline.CompareAndSwap(st, inlineOff) {
				continue
			}
			if st == inlineRetry {
				f.runRetry()
			} else {
				f.readResponse()
			}
			return true
		case inlineOpen:
			if rs.inline.CompareAndSwap(inlineOpen, inlineOff) {
				return false
			}
		default:
			return false
		}
	}
}

// Abort ends the stream's upstream request as the stream's destruction
// would (context Canceled, the upstream stream reset), so that a pump
// blocked in RunInline returns at once; it does nothing once the upstream
// stream was released. It may be called from any goroutine between
// BeginInline and the stream's OnDestroy.
func (f *Filter) Abort() {
	rs := f.rs
	rs.mu.Lock()
	released := rs.released
	rs.mu.Unlock()
	if !released && rs.ctx.cancel(context.Canceled, false) {
		rs.abort()
	}
}

// replayable reports whether a bodyless request may be sent again after
// it met a stale pooled connection, as net/http's Transport decides: a
// safe method, or an idempotency key.
func replayable(h *filter.HeaderMap) bool {
	switch h.Method() {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return h.Has("idempotency-key") || h.Has("x-idempotency-key")
}

// reopen sends the request again on a connection checked for liveness,
// after the last one failed with upstream.ErrStaleConnection (that stream
// is reset). Only replayable requests get here.
func (f *Filter) reopen() (upstream.Stream, error) {
	rs := f.rs
	rs.mu.Lock()
	if rs.released { // the route timeout or the stream's end came first
		rs.mu.Unlock()
		if err := f.ctx.Err(); err != nil {
			return nil, err
		}
		return nil, upstream.ErrStreamClosed
	}
	old := rs.stream
	rs.stream = nil
	rs.mu.Unlock()
	if old != nil {
		old.Reset()
	}
	opts := f.opts
	opts.ProbeConnection = true
	return f.r.upstreams.NewStream(f.ctx, f.entry.cluster, f.reqH, true, opts)
}

// DecodeData forwards request body bytes.
func (f *Filter) DecodeData(data []byte, endStream bool) filter.Status {
	if f.retry != nil {
		f.retry.decodeData(data, endStream)
		return filter.StopIteration
	}
	if f.stream != nil && !f.failed {
		if err := f.stream.WriteData(data, endStream); err != nil {
			f.failed = true // the pump sees the reset and answers
		} else if endStream {
			f.markSent(true)
		}
	}
	return filter.StopIteration
}

// DecodeTrailers forwards request trailers.
func (f *Filter) DecodeTrailers(t *filter.HeaderMap) filter.Status {
	if f.retry != nil {
		f.retry.decodeTrailers(t)
		return filter.StopIteration
	}
	if f.stream != nil && !f.failed {
		if err := f.stream.WriteTrailers(t); err != nil {
			f.failed = true
		} else {
			f.markSent(true)
		}
	}
	return filter.StopIteration
}

// OnDestroy releases the upstream stream when the downstream stream ends
// early, and waits for the pump to finish so that no goroutine outlives the
// stream.
func (f *Filter) OnDestroy() {
	rs := f.rs
	if f.ctx == nil || rs == nil {
		return // no upstream request
	}
	rs.stopTimer()
	rs.mu.Lock()
	released := rs.released
	rs.mu.Unlock()
	if !released && rs.ctx.cancel(context.Canceled, false) {
		rs.abort()
	}
	if f.started {
		<-rs.done
		f.started = false
	}
}

// markSent records the upstream transmit timings: the first byte when
// an attempt starts, the last when the request's end went out. Only the
// router writes these fields.
func (f *Filter) markSent(end bool) {
	info := f.cb.StreamInfo()
	d := time.Since(info.StartTime)
	if info.FirstUpstreamTxByteSent == 0 {
		info.FirstUpstreamTxByteSent = d
	}
	if end {
		info.LastUpstreamTxByteSent = d
	}
}

// fail answers a request that could not be sent or got no response.
func (f *Filter) fail(err error) {
	info := f.cb.StreamInfo()
	var ue *upstream.Error
	switch {
	case errors.Is(f.ctx.Err(), context.DeadlineExceeded) && f.cb.Context().Err() == nil:
		f.cb.SendLocalReply(filter.LocalReply{Code: 504, Body: "upstream request timeout", Flag: filter.UpstreamRequestTimeout, Details: "upstream_response_timeout"})
	case f.cb.Context().Err() != nil:
		// The downstream went away; nothing to answer.
	case errors.As(err, &ue):
		if ue.Reason != "" && info.UpstreamTransportFailureReason == "" {
			info.UpstreamTransportFailureReason = ue.Reason
		}
		code := 503
		details := "upstream_reset_before_response_started"
		switch {
		case ue.Flag.Has(filter.NoClusterFound):
			details = "cluster_not_found"
		case ue.Flag.Has(filter.UpstreamOverflow):
			details = "upstream_overflow"
		case ue.Flag.Has(filter.NoHealthyUpstream):
			details = "no_healthy_upstream"
		case ue.Flag.Has(filter.UpstreamProtocolError):
			code = 502
		}
		f.cb.SendLocalReply(filter.LocalReply{Code: code, Body: "upstream connect error or disconnect/reset before headers", Flag: ue.Flag, Details: details})
	default:
		f.cb.SendLocalReply(filter.LocalReply{Code: 503, Body: "upstream connect error or disconnect/reset before headers",
			Flag: filter.UpstreamRemoteReset, Details: "upstream_reset_before_response_started"})
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pump is readResponse on a goroutine of its own.
func (f *Filter) pump() {
	f.readResponse()
	f.rs.done <- struct{}{}
}

// readResponse reads the upstream response and sends it through the
// encoder path. A replayable request that met a stale pooled connection
// is sent once more, on a connection checked for liveness.
func (f *Filter) readResponse() {
	h, end, err := f.stream.ReadHeaders(f.ctx)
	if err != nil && f.replayable && errors.Is(err, upstream.ErrStaleConnection) {
		var s upstream.Stream
		if s, err = f.reopen(); err == nil {
			f.stream = s
			f.rs.setStream(s)
			h, end, err = s.ReadHeaders(f.ctx)
		}
	}
	if err != nil {
		f.finish(false)
		f.fail(err)
		return
	}
	f.forward(h, end)
}

// forward sends the chosen attempt's response downstream (headers, body,
// trailers), then releases the upstream stream.
func (f *Filter) forward(h *filter.HeaderMap, end bool) {
	s := f.stream
	f.entry.MutateResponse(h)
	if end {
		// Release the upstream stream (and its circuit-breaker slot)
		// before the downstream sees the end, so that a client's next
		// request never finds the slot still taken.
		f.finish(true)
		f.cb.EncodeHeaders(h, true)
		return
	}
	f.cb.EncodeHeaders(h, false)
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := s.ReadData(buf)
		if n > 0 {
			f.cb.EncodeData(buf[:n], false)
		}
		if err == io.EOF {
			info := f.cb.StreamInfo()
			info.LastUpstreamRxByteReceived = time.Since(info.StartTime)
			t := s.Trailers()
			f.finish(true) // as above: upstream first
			if t != nil && t.Len() > 0 {
				f.cb.EncodeTrailers(t)
			} else {
				f.cb.EncodeData(nil, true)
			}
			return
		}
		if err != nil {
			if f.cb.Context().Err() != nil {
				// The downstream went away first (our reset of the
				// upstream caused this error): the manager logs DC.
				f.finish(false)
				return
			}
			timedOut := errors.Is(f.ctx.Err(), context.DeadlineExceeded)
			f.finish(false)
			if timedOut {
				if tr, ok := f.r.upstreams.(TimeoutRecorder); ok {
					tr.RecordTimeout(f.entry.cluster, f.cb.StreamInfo().UpstreamHost)
				}
				f.cb.ResetStream(filter.UpstreamRequestTimeout, "upstream_response_timeout")
			} else {
				flag := filter.UpstreamRemoteReset
				var ue *upstream.Error
				if errors.As(err, &ue) {
					flag = ue.Flag
				}
				f.cb.ResetStream(flag, "upstream_reset_after_response_started")
			}
			return
		}
	}
}

// finish releases the upstream stream exactly once: Close when the
// exchange completed, Reset otherwise. When the context's reset already
// ran (route timeout or downstream gone), there is nothing left to do.
func (f *Filter) finish(ok bool) {
	rs := f.rs
	rs.mu.Lock()
	if rs.released {
		rs.mu.Unlock()
		return
	}
	rs.released = true
	rs.mu.Unlock()
	rs.stopTimer()
	if ok {
		f.stream.Close()
	} else {
		f.stream.Reset()
	}
}

// redirectURL builds the Location of a redirect route.
func (e *Entry) redirectURL(h *filter.HeaderMap) string {
	r := e.redirect
	scheme := h.Scheme()
	if scheme == "" {
		scheme = "http"
	}
	if r.HTTPSRedirect {
		scheme = "https"
	} else if r.SchemeRedirect != "" {
		scheme = r.SchemeRedirect
	}
	host, port := h.Authority(), ""
	if hh, pp, err := net.SplitHostPort(host); err == nil {
		host, port = hh, pp
	}
	if r.HostRedirect != "" {
		host = r.HostRedirect
	}
	if r.PortRedirect != 0 {
		port = strconv.Itoa(r.PortRedirect)
	} else if r.HTTPSRedirect || r.SchemeRedirect != "" {
		port = "" // the scheme's default port
	}
	path := h.Path()
	switch {
	case r.PathRedirect != "":
		_, q, hasQ := strings.Cut(path, "?")
		path = r.PathRedirect
		if hasQ && !strings.Contains(path, "?") {
			path += "?" + q
		}
	case r.PrefixRewrite != "" && e.prefix != "":
		path = r.PrefixRewrite + path[len(e.prefix):]
	}
	if r.StripQuery {
		path, _, _ = strings.Cut(path, "?")
	}
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if port != "" {
		b.WriteString(net.JoinHostPort(host, port))
	} else {
		b.WriteString(host)
	}
	b.WriteString(path)
	return b.String()
}
