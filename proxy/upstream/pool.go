//lint:file-ignore SA1019 x/net/http2's ClientConn is the HTTP/2 client this package is specified to use; Go 1.26's net/http ClientConn dials for itself, which the pool must control.

package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/remora-mesh/remora/internal/mono"
	"github.com/remora-mesh/remora/proxy/filter"
)

// pool is the connection pool of one host for one protocol, after Envoy's
// ConnPoolImplBase: connections with spare capacity sit in the ready list
// (a stack, so the most recently used is reused first and the others can
// reach their idle timeout); connections at capacity are busy; requests
// that find no ready connection wait in the pending queue, served first in
// first out when a connection connects or frees up. An HTTP/1.1
// connection has capacity 1, an HTTP/2 one max_concurrent_streams (lowered
// to the server's SETTINGS_MAX_CONCURRENT_STREAMS once known).
//
// All fields below mu are guarded by it. A pool is safe for concurrent use.
type pool struct {
	host  *Host
	http2 bool

	ctx    context.Context // cancelled by close: aborts dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // dial goroutines
	// staleAt is when (mono.Now) a request last met a stale connection
	// of this pool, 0 if none did: for staleProbeFor after it, every
	// reuse is probed.
	staleAt atomic.Int64

	mu         sync.Mutex
	ready      []*pconn // connections with spare capacity, most recent last
	conns      []*pconn // every established connection
	pending    []*waiter
	connecting int
	closed     bool
	draining   bool
}

// waiter is a request in the pending queue. ch receives exactly one
// result; it is buffered so that the sender never blocks.
type waiter struct {
	ch chan waitResult
}

type waitResult struct {
	pc  *pconn
	err error
}

// pconn is one pooled connection.
type pconn struct {
	pool      *pool
	nc        net.Conn
	localAddr string

	// Guarded by pool.mu.
	capacity  int
	active    int
	remaining int64 // requests this connection may still take; <0 unlimited
	inReady   bool
	broken    bool // never reuse: error, Connection: close, unread body
	closed    bool
	idleSince int64 // mono.Now when it last went idle
	idleTimer *time.Timer

	// Liveness peek of an idle HTTP/1.1 connection (alive_linux.go); used
	// only by the goroutine that holds the connection.
	rawConn   syscall.RawConn
	peekFn    func(fd uintptr) bool
	peekBuf   [1]byte
	peekAlive bool

	h1 h1stream          // the connection's one HTTP/1.1 exchange
	cc *http2.ClientConn // HTTP/2 client connection
}

func newPool(h *Host, http2 bool) *pool {
	p := &pool{host: h, http2: http2}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// newConnCapacity is how many pending requests one new connection serves.
func (p *pool) newConnCapacity() int {
	if p.http2 {
		return int(p.host.cluster.maxStreams)
	}
	return 1
}

// reuseProbeAfter is how long an HTTP/1.1 connection may sit idle in the
// pool and still be reused without a liveness probe. A connection that
// finished a response less than this long ago is taken as it is: an
// upstream closes an idle connection after its keep-alive timeout
// (seconds: Node 5 s, nginx 75 s, Envoy 1 h), and announces any other
// close in the response (Connection: close), so the probe, one
// recv(MSG_PEEK) system call, would find nothing on a busy connection.
// Longer-idle connections are probed before reuse; a request that still
// meets a close (a race no probe can exclude) fails with
// ErrStaleConnection, which the router retries when the request is
// replayable.
const reuseProbeAfter = 5 * time.Millisecond

// staleProbeFor is how long after a request met a stale connection every
// reuse of the pool's connections is probed: an upstream that restarts or
// shuts down closes all of its idle connections at once, and the others
// would fail the next requests too.
const staleProbeFor = time.Second

// staleRecently reports whether a request met a stale connection of p
// within staleProbeFor before now (a mono.Now reading).
func (p *pool) staleRecently(now int64) bool {
	at := p.staleAt.Load()
	return at != 0 && time.Duration(now-at) < staleProbeFor
}

// sawStale records that a request met a stale connection of p.
func (p *pool) sawStale() {
	p.staleAt.Store(mono.Now())
	p.host.cluster.stats.inc(statCxStale)
}

// acquire returns a connection with one unit of capacity reserved for the
// caller, waiting in the pending queue when none is ready. It fails with
// *Error UO when the pending queue is full, *Error UF when the connection
// made for the request fails, or ctx's error. probe checks every ready
// connection for liveness however recently it was used. The caller must
// hand the connection back with release.
func (p *pool) acquire(ctx context.Context, probe bool) (*pconn, error) {
	cl := p.host.cluster
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, &Error{Flag: filter.UpstreamConnectionTermination, Reason: "pool closed", Err: ErrClosed}
		}
		n := len(p.ready)
		if n == 0 {
			break
		}
		pc := p.ready[n-1]
		p.assignLocked(pc)
		idleSince := pc.idleSince
		p.mu.Unlock()
		if pc.cc == nil && !probe && pc.h1.br.Buffered() == 0 {
			now := mono.Now()
			if time.Duration(now-idleSince) < cl.reuseProbeAfter && !p.staleRecently(now) {
				return pc, nil
			}
		}
		if pc.alive() {
			return pc, nil
		}
		// The upstream closed the idle connection (or sent stray bytes):
		// drop it and try the next one.
		p.release(pc, false)
	}
	// No ready connection: wait for one (p.mu is held).
	if !cl.pendingRB.tryAcquire() {
		p.mu.Unlock()
		cl.stats.inc(statRqPendingOverflow)
		return nil, &Error{Flag: filter.UpstreamOverflow, Reason: "pending requests overflow", Err: ErrOverflow}
	}
	cl.stats.inc(statRqPendingTotal)
	cl.stats.inc(statRqPendingActive)
	w := &waiter{ch: make(chan waitResult, 1)}
	p.pending = append(p.pending, w)
	p.tryCreateLocked()
	p.mu.Unlock()

	defer func() {
		cl.pendingRB.release()
		cl.stats.dec(statRqPendingActive)
	}()
	select {
	case r := <-w.ch:
		return r.pc, r.err
	case <-ctx.Done():
	}
	p.mu.Lock()
	removed := p.removePendingLocked(w)
	p.mu.Unlock()
	if !removed { // a connection or an error was handed over meanwhile
		if r := <-w.ch; r.pc != nil {
			p.release(r.pc, true)
		}
	}
	return nil, fmt.Errorf("upstream: waiting for a connection to %s: %w", p.host.addr, ctx.Err())
}

// assignLocked reserves one unit of pc's capacity.
func (p *pool) assignLocked(pc *pconn) {
	pc.active++
	if pc.remaining > 0 {
		pc.remaining--
	}
	if pc.active >= pc.capacity || pc.remaining == 0 {
		p.removeReadyLocked(pc)
	}
}

// release returns one unit of pc's capacity. reusable false means the
// connection must not carry another request (HTTP/1.1: it is closed now;
// HTTP/2: it takes no new streams and closes when its last one ends).
func (p *pool) release(pc *pconn, reusable bool) {
	cl := p.host.cluster
	p.mu.Lock()
	pc.active--
	if !reusable {
		if !pc.broken && !pc.closed {
			cl.stats.inc(statCxNoReuse)
		}
		pc.broken = true
	}
	if pc.cc != nil && !pc.broken {
		if !pc.cc.CanTakeNewRequest() {
			pc.broken = true // GOAWAY received or connection lost
		} else if m := pc.cc.State().MaxConcurrentStreams; m > 0 && int(m) < pc.capacity {
			pc.capacity = int(m)
		}
	}
	if pc.broken || p.closed || p.draining || pc.remaining == 0 {
		p.removeReadyLocked(pc)
		if pc.active == 0 {
			maxed := pc.remaining == 0 && !pc.broken && !p.closed
			p.closeLocked(pc)
			if maxed {
				cl.stats.inc(statCxMaxRequests)
			}
			p.tryCreateLocked()
		}
		p.mu.Unlock()
		return
	}
	p.serveLocked(pc)
	p.mu.Unlock()
}

// serveLocked hands pc's spare capacity to pending requests, oldest first,
// and files pc in the ready list if capacity remains.
func (p *pool) serveLocked(pc *pconn) {
	for len(p.pending) > 0 && pc.active < pc.capacity && pc.remaining != 0 {
		w := p.pending[0]
		p.pending[0] = nil
		p.pending = p.pending[1:]
		p.assignLocked(pc)
		w.ch <- waitResult{pc: pc}
	}
	if len(p.pending) == 0 {
		p.pending = p.pending[:0:0] // let the backing array go
	}
	if pc.active < pc.capacity && pc.remaining != 0 && !pc.inReady {
		p.ready = append(p.ready, pc)
		pc.inReady = true
	}
	if pc.active == 0 {
		pc.idleSince = mono.Now()
	}
}

// tryCreateLocked starts connections for the pending requests that the
// connections being established will not serve, within max_connections.
func (p *pool) tryCreateLocked() {
	cl := p.host.cluster
	perConn := p.newConnCapacity()
	for !p.closed && len(p.pending) > p.connecting*perConn {
		if !cl.cxRB.tryAcquire() {
			if len(p.conns) > 0 || p.connecting > 0 {
				cl.stats.inc(statCxOverflow)
				return
			}
			cl.cxRB.forceAcquire() // a pool's first connection is always allowed
		}
		p.connecting++
		p.wg.Add(1)
		go p.dial()
	}
}

// dial establishes one connection and serves the pending queue with it, or
// fails the pending requests it was made for.
func (p *pool) dial() {
	defer p.wg.Done()
	h := p.host
	cl := h.cluster
	ctx, cancel := context.WithTimeout(p.ctx, cl.connectTimeout)
	alpn := []string{alpnHTTP1}
	if p.http2 {
		alpn = []string{alpnH2}
	}
	nc, err := cl.dialHost(ctx, h, alpn)
	cancel()
	var cc *http2.ClientConn
	if err == nil && p.http2 {
		if cc, err = cl.h2t.NewClientConn(nc); err != nil {
			nc.Close()
		}
	}
	dialFailed := false
	defer func() { // after p.mu is released: ejection takes the cluster's lock
		if dialFailed {
			h.recordLocalFailure()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.connecting--
	if err != nil {
		cl.cxRB.release()
		reason := connectFailureReason(err)
		if p.closed {
			return
		}
		dialFailed = true
		cl.stats.inc(statCxConnectFail)
		h.stats[hostCxConnectFail].Add(1)
		if reason == "connect timeout" {
			cl.stats.inc(statCxConnectTimeout)
		}
		cl.log.Debug("connect failed", zapHost(h), zapErr(err))
		e := &Error{Flag: filter.UpstreamConnectionFailure, Reason: reason, Err: err}
		for len(p.pending) > p.connecting*p.newConnCapacity() {
			w := p.pending[0]
			p.pending[0] = nil
			p.pending = p.pending[1:]
			w.ch <- waitResult{err: e}
		}
		return
	}
	if p.closed {
		cl.cxRB.release()
		if cc != nil {
			cc.Close()
		} else {
			nc.Close()
		}
		return
	}
	pc := &pconn{pool: p, nc: nc, localAddr: nc.LocalAddr().String(), cc: cc, capacity: p.newConnCapacity(), remaining: -1}
	if cl.maxRequestsPerConn > 0 {
		pc.remaining = cl.maxRequestsPerConn
	}
	pc.h1.init(pc)
	pc.idleSince = mono.Now()
	pc.idleTimer = time.AfterFunc(cl.idleTimeout, func() { p.idleCheck(pc) })
	p.conns = append(p.conns, pc)
	cl.stats.inc(statCxTotal)
	cl.stats.inc(statCxActive)
	if p.http2 {
		cl.stats.inc(statCxHTTP2Total)
	} else {
		cl.stats.inc(statCxHTTP1Total)
	}
	h.stats[hostCxTotal].Add(1)
	h.stats[hostCxActive].Add(1)
	p.serveLocked(pc)
	if p.draining && pc.active == 0 { // made for requests that went away
		p.closeLocked(pc)
	}
}

// idleCheck runs from pc's idle timer: it closes pc when it has carried no
// request for idle_timeout, or re-arms the timer for the rest.
func (p *pool) idleCheck(pc *pconn) {
	cl := p.host.cluster
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc.closed {
		return
	}
	if pc.active > 0 {
		pc.idleTimer.Reset(cl.idleTimeout)
		return
	}
	if idle := mono.Since(pc.idleSince); idle < cl.idleTimeout {
		pc.idleTimer.Reset(cl.idleTimeout - idle)
		return
	}
	p.closeLocked(pc)
	cl.stats.inc(statCxIdleTimeout)
}

// closeLocked closes pc and forgets it. Streams still on an HTTP/2
// connection see their reads fail.
func (p *pool) closeLocked(pc *pconn) {
	if pc.closed {
		return
	}
	pc.closed = true
	pc.broken = true
	p.removeReadyLocked(pc)
	for i, c := range p.conns {
		if c == pc {
			p.conns[i] = p.conns[len(p.conns)-1]
			p.conns[len(p.conns)-1] = nil
			p.conns = p.conns[:len(p.conns)-1]
			break
		}
	}
	if pc.idleTimer != nil {
		pc.idleTimer.Stop()
	}
	if pc.cc != nil {
		pc.cc.Close()
	} else {
		pc.nc.Close()
	}
	cl := p.host.cluster
	cl.cxRB.release()
	cl.stats.dec(statCxActive)
	cl.stats.inc(statCxDestroy)
	p.host.stats[hostCxActive].Add(-1)
}

func (p *pool) removeReadyLocked(pc *pconn) {
	if !pc.inReady {
		return
	}
	pc.inReady = false
	for i := len(p.ready) - 1; i >= 0; i-- {
		if p.ready[i] == pc {
			copy(p.ready[i:], p.ready[i+1:])
			p.ready[len(p.ready)-1] = nil
			p.ready = p.ready[:len(p.ready)-1]
			return
		}
	}
}

func (p *pool) removePendingLocked(w *waiter) bool {
	for i, x := range p.pending {
		if x == w {
			copy(p.pending[i:], p.pending[i+1:])
			p.pending[len(p.pending)-1] = nil
			p.pending = p.pending[:len(p.pending)-1]
			return true
		}
	}
	return false
}

// drain stops reusing the pool's connections (its host left the cluster):
// idle ones close now, busy ones when their requests end.
func (p *pool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	for _, pc := range append([]*pconn(nil), p.conns...) {
		if pc.active == 0 {
			p.closeLocked(pc)
		}
	}
}

// close closes every connection, fails the pending requests and waits for
// the dials in progress to end.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.cancel()
	for len(p.conns) > 0 {
		p.closeLocked(p.conns[len(p.conns)-1])
	}
	for _, w := range p.pending {
		w.ch <- waitResult{err: &Error{Flag: filter.UpstreamConnectionTermination, Reason: "pool closed", Err: ErrClosed}}
	}
	p.pending = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// counts returns the pool's connection counts for the admin view.
func (p *pool) counts() (ready, busy, pending, connecting int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready), len(p.conns) - len(p.ready), len(p.pending), p.connecting
}

// connectFailureReason renders a dial error as
// %UPSTREAM_TRANSPORT_FAILURE_REASON%.
func connectFailureReason(err error) string {
	if r, ok := tlsFailureReason(err); ok {
		return r
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "connect timeout"
	case errors.Is(err, context.Canceled):
		return "connect cancelled"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err.Error() // "connection refused"
		}
		return oe.Err.Error()
	}
	return err.Error()
}
