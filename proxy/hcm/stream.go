package hcm

import (
	"context"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/internal/mono"
	"github.com/remora-mesh/remora/internal/weaktimer"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/router"
	"go.uber.org/zap"
)

// stream is one request/response exchange. The handler goroutine drives
// the request side; the router's goroutine drives the response side; both
// take mu around filter hooks. Streams are pooled by their Manager.
type stream struct {
	m *Manager
	d downstream

	ctx context.Context

	info    filter.StreamInfo
	reqH    filter.HeaderMap
	respH   filter.HeaderMap // local replies
	conn    filter.ConnectionInfo
	filters []filter.StreamFilter
	cbs     []filterCB
	term    terminalCB
	rf      *router.Filter
	// routerFilter is the stream's router, reused with the stream.
	routerFilter router.Filter
	dec, enc     pipeline

	mu sync.Mutex
	// Set from any goroutine, processed by whoever holds mu.
	pmu          sync.Mutex
	pendingReply *filter.LocalReply
	replyWaiting atomic.Bool
	resumeDec    atomic.Uint64
	resumeEnc    atomic.Uint64
	wake         chan struct{}

	// done receives one token when the stream completes; a receiver
	// that is not the last one puts it back. Reused with the stream.
	done chan struct{}
	// Guarded by mu.
	completed    bool
	localReplied bool
	headersSent  bool
	inEncode     bool
	abort        bool
	reqDone      bool
	isGRPC       bool
	upgrade      bool
	chunked      bool  // response body streamed without a length: flush as it goes
	respLen      int64 // the response's content-length, -1 if none
	routeMu      sync.Mutex
	route        *router.Entry
	routeCached  bool
	replyBuf     [1]filter.LocalReply
	// tunnel is the HTTP/1.1 connection of an upgraded stream; tunnelR
	// reads what the client sends on it.
	tunnel  net.Conn
	tunnelR io.Reader
	// Frames for the router are queued under mu and handed to it after mu
	// is released, so that a router blocked writing upstream (flow
	// control, connecting) never keeps the response side from running.
	// sinkMu orders the hand-over; qmu guards the queue.
	sinkMu      sync.Mutex
	qmu         sync.Mutex
	sinkQ       []frame
	sinkHead    int
	sinkPending atomic.Int32
	// Frames reused per call site so that delivering one does not
	// allocate; the pipeline copies what it queues.
	decFrame, encFrame frame

	// inline: the router's response pump runs on the serving goroutine
	// (runInline); the stream's end must abort it (mu held).
	inline bool
	goneFn func() // downstreamGone, made once

	remoteIP     string // the downstream's address as text, when the codec has it
	lastActivity atomic.Int64
	// timerMu serialises the timer callbacks with the stream's end: a
	// callback runs entirely under it and does nothing once timersOff.
	timerMu   sync.Mutex
	timersOff bool
	abortConn atomic.Bool // set by a timeout on HTTP/1: close the connection
	// idleTimer stays pending from stream to stream (idleArmed): it is
	// armed when none is pending, and a firing while the stream is idle
	// or over re-arms or rests (onIdle). It holds the stream weakly.
	idleTimer *time.Timer
	idleArmed bool
	reqTimer  *time.Timer
}

func newStream(m *Manager) *stream {
	s := &stream{m: m, wake: make(chan struct{}, 1), done: make(chan struct{}, 1)}
	s.cbs = make([]filterCB, len(m.filters))
	for i := range s.cbs {
		s.cbs[i] = filterCB{s: s, idx: i}
	}
	s.filters = make([]filter.StreamFilter, len(m.filters))
	s.term.s = s
	s.goneFn = s.downstreamGone
	s.dec.call = s.callDecode
	s.dec.sink = s.sinkDecode
	s.dec.halted = s.decodeHalted
	s.dec.overflow = s.decodeOverflow
	s.enc.call = s.callEncode
	s.enc.sink = s.sinkEncode
	s.enc.halted = s.encodeHalted
	s.enc.overflow = s.encodeOverflow
	return s
}

// serve runs the stream; it returns true when the downstream must be
// aborted (a reset after the response began).
func (s *stream) serve(d downstream) bool {
	m := s.m
	now := time.Now()
	s.d = d
	// The codec cancels it when the downstream goes away and when the
	// stream ends.
	s.ctx = d.context()
	select { // a token left by the previous stream's completion
	case <-s.done:
	default:
	}
	s.completed, s.localReplied, s.headersSent, s.inEncode, s.abort, s.reqDone = false, false, false, false, false, false
	s.route, s.routeCached, s.chunked = nil, false, false
	s.pendingReply = nil
	s.replyWaiting.Store(false)
	s.resumeDec.Store(0)
	s.resumeEnc.Store(0)
	select {
	case <-s.wake:
	default:
	}
	s.info.Reset()
	s.reqH.Reset()
	s.respH.Reset()
	info := &s.info
	info.StartTime = now
	s.lastActivity.Store(mono.Now())

	scheme := "http"
	s.remoteIP = ""
	if ci := d.connInfo(); ci != nil {
		s.remoteIP = ci.remoteIP
		s.conn = filter.ConnectionInfo{ID: ci.ID, ListenerName: m.listener, Direction: m.direction}
		info.DownstreamLocalAddress = ci.Local
		info.DownstreamDirectRemoteAddress = ci.Remote
		info.DownstreamRemoteAddress = ci.Remote
	} else {
		s.conn = filter.ConnectionInfo{ListenerName: m.listener, Direction: m.direction}
		if ap, err := netipAddrPort(d.remoteAddr()); err == nil {
			info.DownstreamRemoteAddress, info.DownstreamDirectRemoteAddress = ap, ap
		}
	}
	if ts := d.tlsState(); ts != nil {
		scheme = "https"
		info.DownstreamTLS = true
		info.RequestedServerName = ts.ServerName
		if pc := ts.PeerCertificates; len(pc) > 0 {
			s.conn.PeerCertificatePresented = true
			if len(ts.VerifiedChains) > 0 {
				for _, u := range pc[0].URIs {
					s.conn.PeerCertificateURISANs = append(s.conn.PeerCertificateURISANs, u.String())
				}
				if len(s.conn.PeerCertificateURISANs) > 0 {
					info.DownstreamPeerURISAN = s.conn.PeerCertificateURISANs[0]
				}
			}
		}
	}
	info.Protocol = d.protocol()
	if d.protoMajor() == 2 {
		m.metrics.http2.Inc()
	} else {
		m.metrics.http1.Inc()
	}
	m.metrics.rqTotal.Inc()
	m.metrics.active.Inc()

	h := &s.reqH
	s.upgrade = d.requestHeaders(h, scheme)
	if s.upgrade {
		m.metrics.upgrades.Inc()
	}
	s.prepareRequest(h, scheme)
	info.RequestHeaders = h
	ct := h.Value("content-type")
	s.isGRPC = len(ct) >= 16 && ct[:16] == "application/grpc"

	for i := range m.filters {
		s.filters[i] = m.filters[i].factory.NewFilter(m.filters[i].config, &s.cbs[i])
	}
	s.rf = &s.routerFilter
	m.router.InitFilter(s.rf, &s.term)
	s.dec.reset(len(s.filters), m.bufferLimit)
	s.enc.reset(len(s.filters), m.bufferLimit)

	s.timerMu.Lock()
	s.timersOff = false
	if m.streamIdleTimeout > 0 && !s.idleArmed {
		// A timer still pending from an earlier stream is due no later
		// than this stream could go idle; it fires, finds fresh activity
		// and re-arms.
		if s.idleTimer == nil {
			s.idleTimer = weaktimer.AfterFunc(s, m.streamIdleTimeout, (*stream).onIdle)
		} else {
			s.idleTimer.Reset(m.streamIdleTimeout)
		}
		s.idleArmed = true
	}
	s.timerMu.Unlock()
	s.abortConn.Store(false)
	if m.requestTimeout > 0 {
		s.reqTimer = time.AfterFunc(m.requestTimeout, s.onRequestTimeout)
	}

	endStream := d.bodyless() && !s.upgrade
	if d.protoMajor() == 2 && m.MaxRequestHeaderBytes > 0 && headerBytes(h) > m.MaxRequestHeaderBytes {
		// The HTTP/1 codec bounds the header block itself; on HTTP/2
		// the names and values must fit max_request_headers_kb.
		s.setReply(filter.LocalReply{Code: http.StatusRequestHeaderFieldsTooLarge, Body: "request header fields too large",
			Details: "request_headers_too_large"})
	}
	// A request complete in memory lets the router pump the response on
	// this goroutine once the request is delivered: nothing else needs
	// it meanwhile.
	inline := d.inMemory()
	if inline {
		s.rf.BeginInline()
	}
	s.mu.Lock()
	s.reqDone = endStream
	if endStream {
		info.LastDownstreamRxByteReceived = time.Since(now)
	}
	s.decFrame = frame{kind: frameHeaders, h: h, end: endStream}
	s.dec.deliver(0, &s.decFrame)
	s.unlock()
	s.drainSinkWait()

	switch {
	case s.upgrade:
		s.serveUpgrade()
	case !endStream:
		s.readBody()
	}
	if inline {
		s.runInline()
	}
	s.waitDone()
	return s.finishStream()
}

// runInline runs the router's response pump on the serving goroutine if
// the router left it there (Filter.BeginInline). While it runs, the
// stream's completion (a timeout's local reply, a failed downstream
// write) and the downstream going away abort the upstream request, as
// waitDone and the router's destruction would for a pump goroutine.
func (s *stream) runInline() {
	s.mu.Lock()
	s.inline = true
	completed := s.completed
	s.unlock()
	sc, _ := s.ctx.(*streamCtx)
	if completed {
		s.rf.Abort()
	} else if sc != nil && sc.setHook(s.goneFn) {
		s.downstreamGone()
	}
	s.rf.RunInline()
	if sc != nil {
		sc.setHook(nil)
	}
	s.mu.Lock()
	s.inline = false
	s.unlock()
}

// downstreamGone ends the stream when the client went away, unless it
// completed already or a local reply is about to complete it.
func (s *stream) downstreamGone() {
	s.mu.Lock()
	if !s.completed && !s.replyWaiting.Load() {
		s.info.SetResponseFlag(filter.DownstreamConnectionTermination)
		s.m.metrics.rxReset.Inc()
		s.complete(true)
	}
	s.unlock()
}

// headerBytes is the size of the request's header names and values.
func headerBytes(h *filter.HeaderMap) int {
	n := 0
	for _, f := range h.Fields() {
		n += len(f.Name) + len(f.Value)
	}
	return n
}

// prepareRequest applies the manager's request-header policy.
func (s *stream) prepareRequest(h *filter.HeaderMap, scheme string) {
	m := s.m
	if m.useRemoteAddress {
		if a := s.info.DownstreamDirectRemoteAddress; a.IsValid() {
			ip := s.remoteIP
			if ip == "" {
				ip = a.Addr().Unmap().String()
			}
			if prev, ok := h.Get("x-forwarded-for"); ok && prev != "" {
				h.Set("x-forwarded-for", prev+", "+ip) // Envoy's list format
			} else {
				h.Set("x-forwarded-for", ip)
			}
			s.info.DownstreamRemoteAddress = a
		}
		h.Set("x-forwarded-proto", scheme)
	} else if !h.Has("x-forwarded-proto") {
		h.Set("x-forwarded-proto", scheme)
	}
	if m.generateID && !h.Has("x-request-id") {
		h.Add("x-request-id", newRequestID())
	}
}

// newRequestID returns a random version-4 UUID.
func newRequestID() string {
	var b [36]byte
	const hex = "0123456789abcdef"
	a, c := rand.Uint64(), rand.Uint64()
	a = (a &^ (0xf << 12)) | (4 << 12)   // version 4
	c = (c &^ (0x3 << 62)) | (0x2 << 62) // variant 10
	j := 0
	for i := 0; i < 16; i++ {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		var x byte
		if i < 8 {
			x = byte(a >> (56 - 8*i))
		} else {
			x = byte(c >> (56 - 8*(i-8)))
		}
		b[j], b[j+1] = hex[x>>4], hex[x&0xf]
		j += 2
	}
	return string(b[:])
}

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// readBody pulls the request body and trailers through the decoder filters.
func (s *stream) readBody() {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	first := true
	for {
		// Wait while a filter holds the request (StopIteration).
		for {
			s.mu.Lock()
			stop := s.completed || s.localReplied
			blocked := !stop && s.dec.blocked()
			s.unlock()
			if stop {
				return
			}
			if !blocked {
				break
			}
			select {
			case <-s.wake:
			case <-s.ctxDone():
				return
			}
		}
		if first {
			first = false
			s.mu.Lock()
			if !s.headersSent && !s.completed {
				s.d.sendContinue()
			}
			s.unlock()
		}
		n, err := s.d.readBody(buf)
		s.touch()
		s.mu.Lock()
		if s.completed || s.localReplied {
			s.unlock()
			return
		}
		s.info.BytesReceived += uint64(n)
		switch {
		case err == io.EOF:
			s.reqDone = true
			s.info.LastDownstreamRxByteReceived = time.Since(s.info.StartTime)
			s.stopRequestTimer()
			if t := s.d.trailers(); t != nil {
				if n > 0 {
					s.decFrame = frame{kind: frameData, data: buf[:n]}
					s.dec.deliver(0, &s.decFrame)
				}
				s.decFrame = frame{kind: frameTrailers, h: t, end: true}
				s.dec.deliver(0, &s.decFrame)
			} else {
				s.decFrame = frame{kind: frameData, data: buf[:n], end: true}
				s.dec.deliver(0, &s.decFrame)
			}
			s.unlock()
			s.drainSinkWait()
			return
		case err != nil:
			if n > 0 {
				s.decFrame = frame{kind: frameData, data: buf[:n]}
				s.dec.deliver(0, &s.decFrame)
			}
			s.requestReadFailed(err)
			s.unlock()
			s.drainSinkWait()
			return
		case n > 0:
			s.decFrame = frame{kind: frameData, data: buf[:n]}
			s.dec.deliver(0, &s.decFrame)
		}
		s.unlock()
		// Hand this chunk to the router before buf is read into again.
		s.drainSinkWait()
	}
}

// requestReadFailed handles a body read error (mu held): a malformed body
// (bad chunking, a body longer than its Content-Length) is answered 400
// and the connection closed; a vanished downstream ends the stream.
func (s *stream) requestReadFailed(err error) {
	var ne net.Error
	var mbe *http.MaxBytesError
	switch {
	case s.ctxErr() != nil, errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &ne), errors.Is(err, net.ErrClosed), errors.Is(err, http.ErrBodyReadAfterClose):
		if s.replyWaiting.Load() {
			return // a timeout reply is on its way
		}
		s.info.SetResponseFlag(filter.DownstreamConnectionTermination)
		s.m.metrics.rxReset.Inc()
		s.complete(true)
	case errors.As(err, &mbe):
		s.setReply(filter.LocalReply{Code: 413, Body: "payload too large", Details: "request_payload_too_large"})
	default:
		s.d.setClose()
		s.setReply(filter.LocalReply{Code: 400, Body: "bad request", Flag: filter.DownstreamProtocolError, Details: "http1.codec_error"})
	}
}

// ctxDone and ctxErr read the stream's context; a reusable HTTP/1 one
// is not marked as seen by them.
func (s *stream) ctxDone() <-chan struct{} {
	if sc, ok := s.ctx.(*streamCtx); ok {
		return sc.internalDone()
	}
	return s.ctx.Done()
}

func (s *stream) ctxErr() error {
	if sc, ok := s.ctx.(*streamCtx); ok {
		return sc.internalErr()
	}
	return s.ctx.Err()
}

// waitDone blocks until the response is complete or the downstream left.
func (s *stream) waitDone() {
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
			s.mu.Lock()
			s.unlock()
		case <-s.ctxDone():
			// The downstream went away (the request's own context).
			s.downstreamGone()
			// Completed now, or a pending reply completes it.
			<-s.done
			return
		}
	}
}

// finishStream runs after completion: it releases the filters, calls the
// access-log handlers once and records the stream's metrics.
func (s *stream) finishStream() bool {
	s.timerMu.Lock()
	s.timersOff = true // the idle timer stays pending (see idleArmed)
	if s.reqTimer != nil {
		s.reqTimer.Stop()
		s.reqTimer = nil
	}
	s.timerMu.Unlock()
	// Wait for a router hand-over running on another goroutine.
	s.sinkMu.Lock()
	s.qmu.Lock()
	clear(s.sinkQ)
	s.sinkQ, s.sinkHead = s.sinkQ[:0], 0
	s.sinkPending.Store(0)
	s.qmu.Unlock()
	s.sinkMu.Unlock()
	s.rf.OnDestroy()
	for i, f := range s.filters {
		if d, ok := f.(filter.Destroyer); ok {
			d.OnDestroy()
		}
		s.filters[i] = nil
	}
	s.mu.Lock()
	abort := s.abort || (s.abortConn.Load() && !s.reqDone && !s.d.closing())
	s.mu.Unlock()
	info := &s.info
	if info.LastDownstreamTxByteSent == 0 {
		info.LastDownstreamTxByteSent = time.Since(info.StartTime)
	}
	for _, h := range s.m.accessLogs {
		h.Log(info)
	}
	mm := s.m.metrics
	mm.active.Dec()
	mm.class[info.ResponseCode/100%6].Inc()
	mm.time.Observe(float64(info.LastDownstreamTxByteSent) / float64(time.Millisecond))
	if s.tunnel != nil {
		s.tunnel.Close()
		s.tunnel, s.tunnelR = nil, nil
		abort = false // the connection is ours and closed
	}
	s.rf = nil
	s.d, s.ctx = nil, nil
	s.info.RequestHeaders, s.info.ResponseHeaders, s.info.ResponseTrailers = nil, nil, nil
	s.dec.reset(len(s.filters), 0)
	s.enc.reset(len(s.filters), 0)
	return abort
}

// stopRequestTimer disarms the request timeout once the request is in
// (mu held; the callback checks reqDone too).
func (s *stream) stopRequestTimer() {
	s.timerMu.Lock()
	if s.reqTimer != nil {
		s.reqTimer.Stop()
	}
	s.timerMu.Unlock()
}

func (s *stream) touch() { s.lastActivity.Store(mono.Now()) }

// onIdle runs from the idle timer: it ends a stream idle for
// stream_idle_timeout, re-arms for the rest of it otherwise, and rests
// between streams until the next stream arms it.
func (s *stream) onIdle() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.timersOff {
		s.idleArmed = false
		return
	}
	idle := s.m.streamIdleTimeout
	since := mono.Since(s.lastActivity.Load())
	if since < idle {
		s.idleTimer.Reset(idle - since)
		return
	}
	s.idleArmed = false
	s.m.metrics.idle.Inc()
	s.timeout(filter.LocalReply{Code: 408, Body: "stream timeout", Flag: filter.StreamIdleTimeout, Details: "stream_idle_timeout"})
}

func (s *stream) onRequestTimeout() {
	s.timerMu.Lock()
	defer s.timerMu.Unlock()
	if s.timersOff {
		return
	}
	s.m.metrics.timeout.Inc()
	s.timeout(filter.LocalReply{Code: 408, Body: "request timeout", Details: "request_overall_timeout"})
}

// timeout ends the stream with reply from a timer goroutine.
func (s *stream) timeout(reply filter.LocalReply) {
	if s.d.protoMajor() == 1 {
		// A body read cut by the deadline leaves the connection out of sync.
		s.abortConn.Store(true)
	}
	// The reply's completion unblocks a pending body read (complete);
	// the stream's end then cancels the upstream work.
	s.sendLocalReply(reply)
	s.signal()
}

func (s *stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// --- pending work: local replies and resumes, from any goroutine ---

// sendLocalReply records reply and processes it now if no one holds the
// stream, else when the holder unlocks.
func (s *stream) sendLocalReply(reply filter.LocalReply) {
	s.pmu.Lock()
	if s.pendingReply == nil {
		s.replyBuf[0] = reply
		s.pendingReply = &s.replyBuf[0]
		s.replyWaiting.Store(true)
	}
	s.pmu.Unlock()
	s.kick()
}

// setReply is sendLocalReply for callers holding mu.
func (s *stream) setReply(reply filter.LocalReply) {
	s.pmu.Lock()
	if s.pendingReply == nil {
		s.replyBuf[0] = reply
		s.pendingReply = &s.replyBuf[0]
		s.replyWaiting.Store(true)
	}
	s.pmu.Unlock()
}

func (s *stream) hasPending() bool {
	return s.replyWaiting.Load() || s.resumeDec.Load() != 0 || s.resumeEnc.Load() != 0
}

func (s *stream) kick() {
	for s.hasPending() {
		if !s.mu.TryLock() {
			return // the holder processes it when unlocking
		}
		s.processPending()
		s.mu.Unlock()
	}
	s.drainSink()
	s.signal()
}

// unlock processes pending work, then releases mu; it re-checks after
// releasing so that work posted meanwhile is never lost.
func (s *stream) unlock() {
	for {
		s.processPending()
		s.mu.Unlock()
		if !s.hasPending() || !s.mu.TryLock() {
			break
		}
	}
	s.drainSink()
}

func (s *stream) processPending() {
	did := false
	if s.replyWaiting.Load() {
		s.pmu.Lock()
		r := s.pendingReply
		var reply filter.LocalReply
		if r != nil {
			reply = *r
		}
		s.pendingReply = nil
		s.replyWaiting.Store(false)
		s.pmu.Unlock()
		if r != nil {
			s.doLocalReply(reply)
			did = true
		}
	}
	for b := s.resumeDec.Swap(0); b != 0; b &= b - 1 {
		if !s.localReplied && !s.completed {
			s.dec.resume(bits.TrailingZeros64(b))
		}
		did = true
	}
	for b := s.resumeEnc.Swap(0); b != 0; b &= b - 1 {
		if !s.completed {
			s.enc.resume(len(s.filters) - 1 - bits.TrailingZeros64(b))
		}
		did = true
	}
	if did {
		s.signal()
	}
}

// --- pipeline hooks (mu held) ---

func (s *stream) decodeHalted() bool {
	return s.completed || s.localReplied || s.replyWaiting.Load()
}

func (s *stream) encodeHalted() bool {
	return s.completed || s.replyWaiting.Load()
}

func (s *stream) callDecode(i int, fr *frame) filter.Status {
	f := s.filters[i]
	switch fr.kind {
	case frameHeaders:
		return f.DecodeHeaders(fr.h, fr.end)
	case frameData:
		return f.DecodeData(fr.data, fr.end)
	default:
		return f.DecodeTrailers(fr.h)
	}
}

// callEncode runs encoder filters in reverse order.
func (s *stream) callEncode(i int, fr *frame) filter.Status {
	f := s.filters[len(s.filters)-1-i]
	switch fr.kind {
	case frameHeaders:
		return f.EncodeHeaders(fr.h, fr.end)
	case frameData:
		return f.EncodeData(fr.data, fr.end)
	default:
		return f.EncodeTrailers(fr.h)
	}
}

// sinkDecode queues a request frame for the router (mu held). Its data
// stays valid: the goroutine that produced it drains the queue (drainSink)
// before reusing its buffer.
func (s *stream) sinkDecode(fr *frame) {
	s.qmu.Lock()
	s.sinkQ = append(s.sinkQ, *fr)
	s.qmu.Unlock()
	s.sinkPending.Add(1)
}

// drainSinkWait hands queued request frames to the router, in order,
// outside mu, waiting for a hand-over running elsewhere. When it returns,
// every frame queued before the call was handed over, so the caller may
// reuse the buffers its frames pointed into. Only the goroutine reading
// the downstream calls it, never from inside a router hook.
func (s *stream) drainSinkWait() {
	for s.sinkPending.Load() != 0 {
		s.sinkMu.Lock()
		s.drainSinkLocked()
		s.sinkMu.Unlock()
	}
}

// drainSink is drainSinkWait for everyone else: it hands frames over when
// no one else is doing so, and otherwise leaves them to the goroutine that
// is (which re-checks after releasing sinkMu, so none is stranded). It may
// run inside a router hook (a local reply from DecodeHeaders).
func (s *stream) drainSink() {
	for s.sinkPending.Load() != 0 {
		if !s.sinkMu.TryLock() {
			return
		}
		s.drainSinkLocked()
		s.sinkMu.Unlock()
	}
}

func (s *stream) drainSinkLocked() {
	for {
		s.qmu.Lock()
		if s.sinkHead == len(s.sinkQ) {
			clear(s.sinkQ)
			s.sinkQ, s.sinkHead = s.sinkQ[:0], 0
			s.qmu.Unlock()
			return
		}
		fr := s.sinkQ[s.sinkHead]
		s.sinkHead++
		s.qmu.Unlock()
		s.sinkPending.Add(-1)
		switch fr.kind {
		case frameHeaders:
			s.rf.DecodeHeaders(fr.h, fr.end)
		case frameData:
			s.rf.DecodeData(fr.data, fr.end)
		default:
			s.rf.DecodeTrailers(fr.h)
		}
	}
}

func (s *stream) decodeOverflow() {
	s.m.metrics.tooLarge.Inc()
	s.setReply(filter.LocalReply{Code: 413, Body: "payload too large", Details: "request_payload_too_large"})
}

func (s *stream) encodeOverflow() {
	s.setReply(filter.LocalReply{Code: 500, Body: "response payload too large", Details: "response_payload_too_large"})
}

// sinkEncode writes a response frame downstream.
func (s *stream) sinkEncode(fr *frame) {
	if s.completed {
		return
	}
	info := &s.info
	switch fr.kind {
	case frameHeaders:
		h := fr.h
		code, err := strconv.Atoi(h.Status())
		if err != nil || code < 100 || code > 999 {
			code = 502
		}
		if code == http.StatusSwitchingProtocols {
			s.switchProtocols(h)
			return
		}
		s.respLen = -1
		cl, hasCL := h.Get("content-length")
		if hasCL {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
				s.respLen = n
			}
		}
		s.chunked = !hasCL && !fr.end
		if !s.reqDone && (fr.end || s.localReplied) {
			// An early answer: the rest of the request body will not be
			// read, so the connection cannot carry another request.
			s.d.setClose()
		}
		err = s.d.writeHeaders(code, h, fr.end)
		s.headersSent = true
		info.ResponseCode = code
		info.ResponseHeaders = h
		info.FirstDownstreamTxByteSent = time.Since(info.StartTime)
		if err != nil {
			s.downstreamWriteFailed()
		} else if fr.end {
			s.complete(false)
		} else if s.chunked && !s.localReplied {
			s.flush()
		}
	case frameData:
		if s.tunnel != nil {
			s.writeTunnel(fr)
			return
		}
		if len(fr.data) > 0 || fr.end {
			if err := s.d.writeData(fr.data, fr.end); err != nil {
				s.downstreamWriteFailed()
				return
			}
			info.BytesSent += uint64(len(fr.data))
		}
		if fr.end {
			s.complete(false)
		} else if len(fr.data) > 0 && (s.respLen < 0 || int64(s.info.BytesSent) < s.respLen) {
			// Body bytes go out as they come, except the piece that
			// completes a body of known length: its end follows at once,
			// and the client must not see a complete response before the
			// upstream stream (and its circuit-breaker slot) was released.
			s.flush()
		}
	default:
		if err := s.d.writeTrailers(fr.h); err != nil {
			s.downstreamWriteFailed()
			return
		}
		info.ResponseTrailers = fr.h
		s.complete(false)
	}
}

func (s *stream) flush() {
	if err := s.d.flush(); err != nil {
		s.downstreamWriteFailed()
	}
}

func (s *stream) downstreamWriteFailed() {
	s.info.SetResponseFlag(filter.DownstreamConnectionTermination)
	s.m.metrics.rxReset.Inc()
	s.complete(true)
}

// complete ends the stream (mu held); abort resets the downstream.
func (s *stream) complete(abort bool) {
	if s.completed {
		return
	}
	s.completed = true
	s.abort = s.abort || abort
	s.info.LastDownstreamTxByteSent = time.Since(s.info.StartTime)
	if !s.reqDone && (s.d.protoMajor() != 1 || s.d.closing()) {
		// Unblock a body read still waiting on the downstream. (An
		// HTTP/1 connection that stays open instead lets the codec
		// discard the rest of the body after the stream; a stalled one
		// is cut by the stream idle timeout.)
		s.d.unblockRead()
	}
	if s.tunnel != nil {
		s.tunnel.Close() // unblocks the tunnel's reader
	}
	if s.inline {
		s.rf.Abort() // a no-op once the router released its upstream stream
	}
	s.done <- struct{}{} // the one token of this stream: cap 1, completed once
	s.signal()
}

// resetStream aborts the stream (mu held) with flag.
func (s *stream) resetStream(flag filter.ResponseFlags, details string) {
	if s.completed {
		return
	}
	s.info.SetResponseFlag(flag)
	if details != "" {
		s.info.ResponseCodeDetails = details
	}
	s.complete(true)
}

// grpcStatus maps an HTTP status to a gRPC code as Envoy does.
func grpcStatus(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	}
	return 2 // UNKNOWN
}

// doLocalReply sends reply (mu held).
func (s *stream) doLocalReply(reply filter.LocalReply) {
	if s.completed {
		return
	}
	info := &s.info
	info.SetResponseFlag(reply.Flag)
	if reply.Details != "" {
		info.ResponseCodeDetails = reply.Details
	}
	s.m.metrics.localReply.Inc()
	if ce := s.m.log.Check(zap.DebugLevel, "local reply"); ce != nil {
		ce.Write(zap.Int("code", reply.Code), zap.String("details", reply.Details),
			zap.Stringer("flags", reply.Flag), zap.String("path", s.reqH.Path()), zap.Bool("response_started", s.headersSent))
	}
	if s.headersSent {
		s.complete(true)
		return
	}
	wasLocal := s.localReplied
	s.localReplied = true
	h := &s.respH
	h.Reset()
	body := reply.Body
	if s.isGRPC {
		h.Add(filter.HeaderStatus, "200")
		h.Add("content-type", "application/grpc")
		h.Add("grpc-status", strconv.Itoa(grpcStatus(reply.Code)))
		if body != "" {
			h.Add("grpc-message", grpcMessageEncode(body))
		}
		body = ""
	} else {
		h.Add(filter.HeaderStatus, strconv.Itoa(reply.Code))
		if body != "" {
			h.Add("content-type", "text/plain")
		}
		h.Add("content-length", strconv.Itoa(len(body)))
	}
	for _, f := range reply.Headers {
		h.Set(f.Name, f.Value)
	}
	end := body == ""
	if s.inEncode || wasLocal {
		// Raised by an encoder filter: do not run the encoders again.
		s.sinkEncode(&frame{kind: frameHeaders, h: h, end: end})
		if !end {
			s.sinkEncode(&frame{kind: frameData, data: []byte(body), end: true})
		}
		return
	}
	s.enc.reset(len(s.filters), s.m.bufferLimit)
	s.inEncode = true
	s.enc.deliver(0, &frame{kind: frameHeaders, h: h, end: end})
	if !end {
		s.enc.deliver(0, &frame{kind: frameData, data: []byte(body), end: true})
	}
	s.inEncode = false
}

// grpcMessageEncode percent-encodes a grpc-message value.
func grpcMessageEncode(msg string) string {
	const hex = "0123456789ABCDEF"
	ok := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			ok = false
			break
		}
	}
	if ok {
		return msg
	}
	b := make([]byte, 0, len(msg)*3)
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// route resolves (and caches) the stream's route.
func (s *stream) resolveRoute() filter.Route {
	// routeMu, not mu: the router asks from outside the stream mutex.
	s.routeMu.Lock()
	if !s.routeCached {
		s.route = s.m.routes.Route(&s.reqH)
		s.routeCached = true
	}
	r := s.route
	s.routeMu.Unlock()
	if r == nil {
		return nil
	}
	return r
}

func (s *stream) clearRouteCache() {
	s.routeMu.Lock()
	s.routeCached = false
	s.routeMu.Unlock()
}

// --- callbacks ---

// filterCB is the Callbacks of the filter at idx.
type filterCB struct {
	s   *stream
	idx int
}

var _ filter.Callbacks = (*filterCB)(nil)

func (c *filterCB) Context() context.Context           { return c.s.ctx }
func (c *filterCB) StreamInfo() *filter.StreamInfo     { return &c.s.info }
func (c *filterCB) Route() filter.Route                { return c.s.resolveRoute() }
func (c *filterCB) ClearRouteCache()                   { c.s.clearRouteCache() }
func (c *filterCB) SendLocalReply(r filter.LocalReply) { c.s.sendLocalReply(r) }
func (c *filterCB) DecodingBuffer() []byte             { return c.s.dec.heldData(c.idx) }
func (c *filterCB) Connection() filter.ConnectionInfo  { return c.s.conn }

func (c *filterCB) ContinueDecoding() {
	c.s.resumeDec.Or(1 << c.idx)
	c.s.kick()
}

func (c *filterCB) ContinueEncoding() {
	c.s.resumeEnc.Or(1 << c.idx)
	c.s.kick()
}

// terminalCB is the router's view of the stream.
type terminalCB struct{ s *stream }

var _ filter.TerminalCallbacks = (*terminalCB)(nil)

func (c *terminalCB) Context() context.Context           { return c.s.ctx }
func (c *terminalCB) StreamInfo() *filter.StreamInfo     { return &c.s.info }
func (c *terminalCB) Route() filter.Route                { return c.s.resolveRoute() }
func (c *terminalCB) ClearRouteCache()                   { c.s.clearRouteCache() }
func (c *terminalCB) SendLocalReply(r filter.LocalReply) { c.s.sendLocalReply(r) }
func (c *terminalCB) ContinueDecoding()                  {}
func (c *terminalCB) ContinueEncoding()                  {}
func (c *terminalCB) DecodingBuffer() []byte             { return nil }
func (c *terminalCB) Connection() filter.ConnectionInfo  { return c.s.conn }

func (c *terminalCB) EncodeHeaders(h *filter.HeaderMap, end bool) {
	s := c.s
	s.touch()
	s.mu.Lock()
	if !s.completed && !s.localReplied {
		s.info.FirstUpstreamRxByteReceived = time.Since(s.info.StartTime)
		if s.info.ResponseCodeDetails == "" {
			s.info.ResponseCodeDetails = "via_upstream"
		}
		s.inEncode = true
		s.encFrame = frame{kind: frameHeaders, h: h, end: end}
		s.enc.deliver(0, &s.encFrame)
		s.inEncode = false
	}
	s.unlock()
}

func (c *terminalCB) EncodeData(data []byte, end bool) {
	s := c.s
	s.touch()
	s.mu.Lock()
	if !s.completed && !s.localReplied {
		s.inEncode = true
		s.encFrame = frame{kind: frameData, data: data, end: end}
		s.enc.deliver(0, &s.encFrame)
		s.inEncode = false
	}
	s.unlock()
}

func (c *terminalCB) EncodeTrailers(t *filter.HeaderMap) {
	s := c.s
	s.touch()
	s.mu.Lock()
	if !s.completed && !s.localReplied {
		s.inEncode = true
		s.encFrame = frame{kind: frameTrailers, h: t, end: true}
		s.enc.deliver(0, &s.encFrame)
		s.inEncode = false
	}
	s.unlock()
}

func (c *terminalCB) SetResponseFlag(flag filter.ResponseFlags) {
	c.s.mu.Lock()
	c.s.info.SetResponseFlag(flag)
	c.s.unlock()
}

func (c *terminalCB) ResetStream(flag filter.ResponseFlags, details string) {
	s := c.s
	s.mu.Lock()
	if !s.localReplied {
		s.resetStream(flag, details)
	}
	s.unlock()
}
