package hcm

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP1Server serves downstream HTTP/1.x connections for one Manager with
// Remora's own codec: one goroutine per connection reads a request head
// straight from a pooled bufio.Reader into the stream's filter.HeaderMap,
// runs the stream (the filter chain and the router), writes the response
// into a pooled bufio.Writer and flushes it once the response is complete
// (or when a streamed response needs it), then reads the next request.
// Requests on a connection are served in order (pipelining); a malformed
// request is answered 400 (431 for an oversized head, 505 for another
// HTTP version) with "Connection: close" and the connection closed.
//
// An HTTP1Server is safe for concurrent use; its fields must be set
// before the first ServeConn.
type HTTP1Server struct {
	// M runs the streams.
	M *Manager
	// H2C, when set, serves a plaintext connection as HTTP/2: after the
	// codec saw the prior-knowledge preface (upgrade nil; conn replays
	// the preface) or answered 101 to an "Upgrade: h2c" request (upgrade
	// is that request, settings its decoded HTTP2-Settings). It returns
	// when the connection is done.
	H2C func(ctx context.Context, conn net.Conn, upgrade *http.Request, settings []byte)
	// HeaderTimeout bounds reading a request head once its first byte
	// arrived; 0 means none.
	HeaderTimeout time.Duration

	mu       sync.Mutex
	conns    map[*http1Conn]struct{}
	draining atomic.Bool
	zero     chan struct{} // closed when draining and no connection is left
}

// Connection states, for a drain.
const (
	connIdle int32 = iota
	connActive
	connClosed
)

// ServeConn serves conn until it closes; it closes conn. ci identifies
// the connection (nil: ids and addresses are taken from conn); ts is its
// TLS state (nil for plaintext). ServeConn blocks.
func (srv *HTTP1Server) ServeConn(ctx context.Context, conn net.Conn, ci *ConnInfo, ts *tls.ConnectionState) {
	c := newHTTP1Conn(srv, conn, ci, ts)
	if !srv.track(c) {
		conn.Close()
		return
	}
	defer srv.untrack(c)
	c.baseCtx = WithConnInfo(ctx, &c.ci)
	c.serve()
}

func (srv *HTTP1Server) track(c *http1Conn) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.draining.Load() {
		return false
	}
	if srv.conns == nil {
		srv.conns = map[*http1Conn]struct{}{}
	}
	srv.conns[c] = struct{}{}
	return true
}

func (srv *HTTP1Server) untrack(c *http1Conn) {
	srv.mu.Lock()
	delete(srv.conns, c)
	if len(srv.conns) == 0 && srv.zero != nil {
		select {
		case <-srv.zero:
		default:
			close(srv.zero)
		}
	}
	srv.mu.Unlock()
}

// Drain stops serving new requests: idle keep-alive connections are closed
// at once, connections with a request in flight close after its response
// (which says "Connection: close"). Drain waits until every connection is
// closed or ctx ends (then it returns ctx's error; Close cuts the rest).
func (srv *HTTP1Server) Drain(ctx context.Context) error {
	srv.mu.Lock()
	srv.draining.Store(true)
	if srv.zero == nil {
		srv.zero = make(chan struct{})
		if len(srv.conns) == 0 {
			close(srv.zero)
		}
	}
	zero := srv.zero
	for c := range srv.conns {
		if c.state.CompareAndSwap(connIdle, connClosed) {
			c.conn.Close()
		}
	}
	srv.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every connection.
func (srv *HTTP1Server) Close() {
	srv.mu.Lock()
	srv.draining.Store(true)
	for c := range srv.conns {
		c.state.Store(connClosed)
		c.conn.Close()
	}
	srv.mu.Unlock()
}
