package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

func okHandler(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, body)
	})
}

func TestPoolReusesConnection(t *testing.T) {
	srv := newCountingServer(t, okHandler("hello"))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")
	for i := 0; i < 5; i++ {
		rh, body, _ := roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
		if rh.Status() != "200" || string(body) != "hello" {
			t.Fatalf("got %s %q", rh.Status(), body)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
	if got := statOf(c, statRqTotal); got != 5 {
		t.Fatalf("upstream_rq_total = %d, want 5", got)
	}
	if got := statOf(c, statCxTotal); got != 1 {
		t.Fatalf("upstream_cx_total = %d, want 1", got)
	}
}

func TestPoolFillsStreamInfo(t *testing.T) {
	srv := newCountingServer(t, okHandler("x"))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	var info filter.StreamInfo
	roundTrip(t, m.Cluster("web"), reqHeaders("GET", "/", "web"), nil, StreamOptions{Info: &info})
	if info.UpstreamCluster != "web" || info.UpstreamHost != srv.addr() || info.UpstreamLocalAddress == "" {
		t.Fatalf("info = %+v", info)
	}
}

// blockingServer answers each request once its handler is released.
type blockingServer struct {
	*countingServer
	arrived chan string
	release chan struct{}
}

func newBlockingServer(t *testing.T) *blockingServer {
	b := &blockingServer{arrived: make(chan string, 16), release: make(chan struct{}, 16)}
	b.countingServer = newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.arrived <- r.URL.Path
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, r.URL.Path)
	}))
	return b
}

func TestPendingQueueFIFOAndOverflow(t *testing.T) {
	srv := newBlockingServer(t)
	cfg := staticCluster("web", srv.addr())
	cfg.CircuitBreakers = CircuitBreakersConfig{MaxConnections: 1, MaxPendingRequests: 2}
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("web")
	ctx := testCtx(t)

	a, err := c.NewStream(ctx, reqHeaders("GET", "/a", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := <-srv.arrived; p != "/a" {
		t.Fatalf("first request %s", p)
	}
	type got struct {
		name string
		s    Stream
		err  error
	}
	order := make(chan got, 2)
	start := func(name string, want int64) {
		go func() {
			s, err := c.NewStream(ctx, reqHeaders("GET", "/"+name, "web"), true, StreamOptions{})
			order <- got{name, s, err}
		}()
		waitFor(t, "pending request "+name, func() bool { return statOf(c, statRqPendingActive) == want })
	}
	start("b", 1)
	start("c", 2)

	// The pending queue is full: the next request overflows.
	_, err = c.NewStream(ctx, reqHeaders("GET", "/d", "web"), true, StreamOptions{})
	if flagOf(err) != filter.UpstreamOverflow {
		t.Fatalf("4th request: err = %v, want UO", err)
	}
	if statOf(c, statRqPendingOverflow) != 1 || statOf(c, statCxOverflow) != 2 {
		t.Fatalf("upstream_rq_pending_overflow = %d, upstream_cx_overflow = %d",
			statOf(c, statRqPendingOverflow), statOf(c, statCxOverflow))
	}

	finish := func(s Stream, want string) {
		t.Helper()
		srv.release <- struct{}{}
		rh, _, err := s.ReadHeaders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, _ := s.ReadData(buf)
		if rh.Status() != "200" || string(buf[:n]) != want {
			t.Fatalf("response %s %q, want %q", rh.Status(), buf[:n], want)
		}
		if _, err := s.ReadData(buf); err != io.EOF {
			t.Fatalf("ReadData after body: %v", err)
		}
		s.Close()
	}
	finish(a, "/a")
	first := <-order
	if first.err != nil || first.name != "b" {
		t.Fatalf("first served %s (%v), want b", first.name, first.err)
	}
	select {
	case g := <-order:
		t.Fatalf("%s served while b holds the only connection", g.name)
	default:
	}
	<-srv.arrived
	finish(first.s, "/b")
	second := <-order
	if second.err != nil || second.name != "c" {
		t.Fatalf("second served %s (%v), want c", second.name, second.err)
	}
	<-srv.arrived
	finish(second.s, "/c")
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1", n)
	}
	// a waited too, while its connection was being made.
	if statOf(c, statRqPendingTotal) != 3 || statOf(c, statRqPendingActive) != 0 {
		t.Fatalf("pending total %d active %d", statOf(c, statRqPendingTotal), statOf(c, statRqPendingActive))
	}
}

func TestPendingRequestCancelledByContext(t *testing.T) {
	srv := newBlockingServer(t)
	cfg := staticCluster("web", srv.addr())
	cfg.CircuitBreakers = CircuitBreakersConfig{MaxConnections: 1}
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("web")
	a, err := c.NewStream(testCtx(t), reqHeaders("GET", "/a", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-srv.arrived
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := c.NewStream(ctx, reqHeaders("GET", "/b", "web"), true, StreamOptions{})
		errc <- err
	}()
	waitFor(t, "pending request", func() bool { return statOf(c, statRqPendingActive) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if statOf(c, statRqPendingActive) != 0 {
		t.Fatal("pending request still counted")
	}
	srv.release <- struct{}{}
	a.Reset()
}

func TestMaxRequestsOverflow(t *testing.T) {
	srv := newBlockingServer(t)
	cfg := staticCluster("web", srv.addr())
	cfg.CircuitBreakers = CircuitBreakersConfig{MaxRequests: 1}
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("web")
	var info filter.StreamInfo
	a, err := c.NewStream(testCtx(t), reqHeaders("GET", "/a", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.NewStream(testCtx(t), reqHeaders("GET", "/b", "web"), true, StreamOptions{Info: &info})
	if flagOf(err) != filter.UpstreamOverflow || !errors.Is(err, ErrOverflow) {
		t.Fatalf("err = %v, want UO", err)
	}
	if info.UpstreamTransportFailureReason == "" {
		t.Fatal("no failure reason recorded")
	}
	<-srv.arrived
	srv.release <- struct{}{}
	a.Reset()
	// The breaker's unit came back with the reset.
	srv.release <- struct{}{}
	roundTrip(t, c, reqHeaders("GET", "/c", "web"), nil, StreamOptions{})
}

func TestConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused

	blackhole := func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == "127.0.0.2:9" {
			<-ctx.Done() // a SYN that is never answered
			return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
		}
		var d net.Dialer
		return d.DialContext(ctx, network, a)
	}
	refused := staticCluster("refused", addr)
	timeout := staticCluster("timeout", "127.0.0.2:9")
	timeout.ConnectTimeout = 0
	timeout.ConnectTimeout.UnmarshalYAML(yamlScalar("50ms"))
	m := newTestManager(t, Options{DialContext: blackhole}, refused, timeout)

	tests := []struct {
		cluster, reason string
		stat            stat
	}{
		{"refused", "connection refused", statCxConnectFail},
		{"timeout", "connect timeout", statCxConnectTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.cluster, func(t *testing.T) {
			c := m.Cluster(tt.cluster)
			var info filter.StreamInfo
			_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{Info: &info})
			var e *Error
			if !errors.As(err, &e) || e.Flag != filter.UpstreamConnectionFailure {
				t.Fatalf("err = %v, want UF", err)
			}
			if e.Reason != tt.reason || info.UpstreamTransportFailureReason != tt.reason {
				t.Fatalf("reason %q / %q, want %q", e.Reason, info.UpstreamTransportFailureReason, tt.reason)
			}
			if statOf(c, tt.stat) != 1 || statOf(c, statCxConnectFail) != 1 {
				t.Fatalf("connect stats: fail %d timeout %d", statOf(c, statCxConnectFail), statOf(c, statCxConnectTimeout))
			}
			if statOf(c, statRqActive) != 0 || c.rqRB.cur.Load() != 0 || c.cxRB.cur.Load() != 0 {
				t.Fatal("resources leaked after a connect failure")
			}
		})
	}
}

func TestNoHealthyUpstream(t *testing.T) {
	m := newTestManager(t, Options{Resolver: &fakeResolverErr{}}, ClusterConfig{
		Name: "dns", Type: TypeStrictDNS, Endpoints: []EndpointConfig{{Address: "nowhere.invalid:80"}},
	})
	_, err := m.Cluster("dns").NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{})
	if flagOf(err) != filter.NoHealthyUpstream {
		t.Fatalf("err = %v, want UH", err)
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	srv := newCountingServer(t, okHandler("ok"))
	cfg := staticCluster("web", srv.addr())
	cfg.MaxRequestsPerConnection = 2
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("web")
	for i := 0; i < 5; i++ {
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
	}
	if n := srv.conns.Load(); n != 3 {
		t.Fatalf("server saw %d connections, want 3", n)
	}
	if got := statOf(c, statCxMaxRequests); got != 2 {
		t.Fatalf("upstream_cx_max_requests = %d, want 2", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	srv := newCountingServer(t, okHandler("ok"))
	cfg := staticCluster("web", srv.addr())
	cfg.IdleTimeout.UnmarshalYAML(yamlScalar("30ms"))
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("web")
	roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
	waitFor(t, "idle timeout", func() bool { return statOf(c, statCxIdleTimeout) == 1 })
	if statOf(c, statCxActive) != 0 || statOf(c, statCxDestroy) != 1 {
		t.Fatalf("cx_active %d cx_destroy %d", statOf(c, statCxActive), statOf(c, statCxDestroy))
	}
	roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
	if n := srv.conns.Load(); n != 2 {
		t.Fatalf("server saw %d connections, want 2", n)
	}
}

func TestConnectionNotReused(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/big":
			io.WriteString(w, big)
		default:
			io.WriteString(w, "ok")
		}
	}))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")

	t.Run("connection close", func(t *testing.T) {
		before := srv.conns.Load()
		rh, body, _ := roundTrip(t, c, reqHeaders("GET", "/close", "web"), nil, StreamOptions{})
		if string(body) != "bye" || rh.Has("connection") {
			t.Fatalf("body %q headers %v", body, rh.Fields())
		}
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
		if n := srv.conns.Load() - before; n != 2 {
			t.Fatalf("%d new connections, want 2", n)
		}
	})
	t.Run("body not fully read", func(t *testing.T) {
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{}) // warm
		before := srv.conns.Load()
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/big", "web"), true, StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReadHeaders(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		s.ReadData(make([]byte, 10))
		s.Close()
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
		if n := srv.conns.Load() - before; n != 1 {
			t.Fatalf("%d new connections, want 1", n)
		}
	})
	t.Run("reset", func(t *testing.T) {
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
		before := srv.conns.Load()
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Reset()
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
		if n := srv.conns.Load() - before; n != 1 {
			t.Fatalf("%d new connections, want 1", n)
		}
	})
}

// TestIdleConnectionClosedByUpstream checks that a pooled connection the
// upstream closed while idle is detected before reuse once it sat idle
// past the reuse window, and that within the window the request fails
// with ErrStaleConnection (no response byte, the host not blamed) and
// goes through on a probed connection when asked again.
func TestIdleConnectionClosedByUpstream(t *testing.T) {
	closeIdle := func(t *testing.T, window time.Duration) (*countingServer, *Cluster) {
		srv := newCountingServer(t, okHandler("ok"))
		m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
		c := m.Cluster("web")
		c.reuseProbeAfter = window
		roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
		srv.CloseClientConnections()
		waitFor(t, "the pooled connection to see EOF", func() bool {
			p := c.Hosts()[0].h1
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.ready) == 1 && !p.ready[0].alive()
		})
		return srv, c
	}
	t.Run("idle past the window: probed", func(t *testing.T) {
		srv, c := closeIdle(t, 0)
		rh, _, _ := roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{})
		if rh.Status() != "200" {
			t.Fatalf("status %s", rh.Status())
		}
		if n := srv.conns.Load(); n != 2 {
			t.Fatalf("server saw %d connections, want 2", n)
		}
		if n := statOf(c, statCxStale); n != 0 {
			t.Fatalf("upstream_cx_stale %d, want 0", n)
		}
	})
	// The head goes out in NewStream, or with ReadHeaders' wait
	// (SendWithRead): either way the request meets the closed connection.
	for _, withRead := range []bool{false, true} {
		t.Run(fmt.Sprintf("within the window: stale, then probed, SendWithRead %v", withRead), func(t *testing.T) {
			srv, c := closeIdle(t, time.Hour)
			s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{SendWithRead: withRead})
			if err != nil {
				t.Fatalf("NewStream: %v", err)
			}
			_, _, err = s.ReadHeaders(testCtx(t))
			s.Reset()
			var ue *Error
			if !errors.Is(err, ErrStaleConnection) || !errors.As(err, &ue) || ue.Flag != filter.UpstreamConnectionTermination {
				t.Fatalf("ReadHeaders on the stale connection: %v, want UC ErrStaleConnection", err)
			}
			if n := statOf(c, statCxStale); n != 1 {
				t.Fatalf("upstream_cx_stale %d, want 1", n)
			}
			rh, _, _ := roundTrip(t, c, reqHeaders("GET", "/", "web"), nil, StreamOptions{ProbeConnection: true})
			if rh.Status() != "200" {
				t.Fatalf("status %s", rh.Status())
			}
			if n := srv.conns.Load(); n != 2 {
				t.Fatalf("server saw %d connections, want 2", n)
			}
		})
	}
}

// TestStaleConnectionProbesThePool: once a request met a stale
// connection, the pool probes every reuse for a while, so that the other
// connections an upstream closed together (a restart) fail no request.
func TestStaleConnectionProbesThePool(t *testing.T) {
	srv := newCountingServer(t, okHandler("ok"))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")
	c.reuseProbeAfter = time.Hour
	// Two pooled connections: two exchanges at once.
	var streams []Stream
	for range 2 {
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{})
		if err != nil {
			t.Fatalf("NewStream: %v", err)
		}
		streams = append(streams, s)
	}
	for _, s := range streams {
		if _, _, err := s.ReadHeaders(testCtx(t)); err != nil {
			t.Fatalf("ReadHeaders: %v", err)
		}
		readAll(t, s)
		s.Close()
	}
	srv.CloseClientConnections()
	waitFor(t, "both pooled connections to see EOF", func() bool {
		p := c.Hosts()[0].h1
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.ready) == 2 && !p.ready[0].alive() && !p.ready[1].alive()
	})
	s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	_, _, err = s.ReadHeaders(testCtx(t))
	s.Reset()
	if !errors.Is(err, ErrStaleConnection) {
		t.Fatalf("first request: %v, want ErrStaleConnection", err)
	}
	// The second pooled connection is probed, dropped, and replaced.
	rh, _, _ := roundTrip(t, c, reqHeaders("POST", "/", "web"), []byte("x"), StreamOptions{})
	if rh.Status() != "200" {
		t.Fatalf("status %s", rh.Status())
	}
	if n := srv.conns.Load(); n != 3 {
		t.Fatalf("server saw %d connections, want 3", n)
	}
	if n := statOf(c, statCxStale); n != 1 {
		t.Fatalf("upstream_cx_stale %d, want 1", n)
	}
}

func TestManagerCloseFailsPending(t *testing.T) {
	srv := newBlockingServer(t)
	cfg := staticCluster("web", srv.addr())
	cfg.CircuitBreakers = CircuitBreakersConfig{MaxConnections: 1}
	m, err := NewManager([]ClusterConfig{cfg}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("web")
	a, err := c.NewStream(testCtx(t), reqHeaders("GET", "/a", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-srv.arrived
	errc := make(chan error, 1)
	go func() {
		_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/b", "web"), true, StreamOptions{})
		errc <- err
	}()
	waitFor(t, "pending request", func() bool { return statOf(c, statRqPendingActive) == 1 })
	m.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending request: %v, want ErrClosed", err)
	}
	if _, _, err := a.ReadHeaders(testCtx(t)); err == nil {
		t.Fatal("active stream survived Close")
	}
	a.Reset()
	srv.release <- struct{}{}
	if _, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestStreamUnusableAfterClose(t *testing.T) {
	srv := newCountingServer(t, okHandler("ok"))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")
	old, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old.ReadHeaders(testCtx(t))
	readAll(t, old)
	old.Close()
	// The next request gets the same connection; the old handle must not
	// reach it.
	s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := old.ReadHeaders(testCtx(t)); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("stale ReadHeaders: %v", err)
	}
	if err := old.WriteData([]byte("x"), true); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("stale WriteData: %v", err)
	}
	old.Reset() // a no-op
	old.Close()
	rh, _, err := s.ReadHeaders(testCtx(t))
	if err != nil || rh.Status() != "200" {
		t.Fatalf("live stream: %v", err)
	}
	if b := readAll(t, s); string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
	s.Close()
	if srv.conns.Load() != 1 || statOf(c, statRqActive) != 0 {
		t.Fatalf("conns %d rq_active %d", srv.conns.Load(), statOf(c, statRqActive))
	}
}

// TestConcurrentRequests drives many goroutines through a small pool of
// both protocols and checks every request succeeds, the connection limit
// holds, and every counter returns to zero.
func TestConcurrentRequests(t *testing.T) {
	for _, protocol := range []string{ProtocolHTTP1, ProtocolHTTP2} {
		t.Run(protocol, func(t *testing.T) {
			srv := newH2CServer(t, okHandler("ok"), 0)
			cfg := h2Cluster("web", srv.addr(), protocol, 3)
			cfg.CircuitBreakers.MaxConnections = 4
			cfg.MaxRequestsPerConnection = 7
			m := newTestManager(t, Options{}, cfg)
			c := m.Cluster("web")
			const workers, each = 16, 15
			errc := make(chan error, workers)
			for range workers {
				go func() {
					for range each {
						s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "web"), true, StreamOptions{})
						if err != nil {
							errc <- err
							return
						}
						rh, end, err := s.ReadHeaders(testCtx(t))
						if err == nil && !end {
							for buf := make([]byte, 64); err == nil; {
								_, err = s.ReadData(buf)
							}
							if err == io.EOF {
								err = nil
							}
						}
						if err == nil && rh.Status() != "200" {
							err = errors.New("status " + rh.Status())
						}
						s.Close()
						if err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
			}
			for range workers {
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
			if statOf(c, statRqTotal) != workers*each || statOf(c, statRqActive) != 0 || statOf(c, statRqPendingActive) != 0 {
				t.Fatalf("rq_total %d rq_active %d pending_active %d", statOf(c, statRqTotal), statOf(c, statRqActive), statOf(c, statRqPendingActive))
			}
			// A dial started for a request that another connection served
			// meanwhile may still be finishing: it holds a breaker unit
			// until it joins the pool.
			waitFor(t, "dials to settle", func() bool { return c.cxRB.cur.Load() == statOf(c, statCxActive) })
			if open := statOf(c, statCxActive); open > 4 {
				t.Fatalf("cx_active %d above the limit of 4", open)
			}
			if c.rqRB.cur.Load() != 0 || c.pendingRB.cur.Load() != 0 {
				t.Fatal("breaker units leaked")
			}
		})
	}
}

func TestConnectFailureFailsEveryPendingRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := staticCluster("refused", addr)
	cfg.CircuitBreakers.MaxConnections = 2
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("refused")
	const n = 6
	errc := make(chan error, n)
	for range n {
		go func() {
			_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{})
			errc <- err
		}()
	}
	for range n {
		if err := <-errc; flagOf(err) != filter.UpstreamConnectionFailure {
			t.Fatalf("err %v, want UF", err)
		}
	}
	if statOf(c, statRqPendingActive) != 0 || c.pendingRB.cur.Load() != 0 || c.cxRB.cur.Load() != 0 {
		t.Fatal("resources leaked")
	}
}

func TestReadHeadersContextDeadline(t *testing.T) {
	srv := newBlockingServer(t)
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")
	s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/slow", "web"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-srv.arrived
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := s.ReadHeaders(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if statOf(c, statRqTimeout) != 1 || c.Hosts()[0].stats[hostRqTimeout].Load() != 1 {
		t.Fatalf("upstream_rq_timeout %d", statOf(c, statRqTimeout))
	}
	s.Reset()
	srv.release <- struct{}{}
	if ready, busy, _, _ := c.Hosts()[0].h1.counts(); ready+busy != 0 {
		t.Fatalf("timed-out connection kept (ready %d busy %d)", ready, busy)
	}
}

func TestUpgradeRefusedOnHTTP2Cluster(t *testing.T) {
	m := newTestManager(t, Options{}, h2Cluster("h2", "127.0.0.1:1", ProtocolHTTP2, 0))
	_, err := m.Cluster("h2").NewStream(testCtx(t), reqHeaders("GET", "/", "h2", "upgrade", "websocket"), true, StreamOptions{Upgrade: true})
	if flagOf(err) != filter.UpstreamProtocolError {
		t.Fatalf("err %v, want UPE", err)
	}
}

// TestResetFromAnotherGoroutine mirrors the router: a context.AfterFunc
// resets the stream (route timeout) while another goroutine is blocked
// reading the response or writing the body. Run under -race.
func TestResetFromAnotherGoroutine(t *testing.T) {
	for _, protocol := range []string{ProtocolHTTP1, ProtocolHTTP2} {
		t.Run(protocol, func(t *testing.T) {
			srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				io.Copy(io.Discard, r.Body)
				<-r.Context().Done() // never finishes the response
			}), 0)
			m := newTestManager(t, Options{}, h2Cluster("web", srv.addr(), protocol, 0))
			c := m.Cluster("web")
			started := int64(0)
			for i := range 20 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+i%4)*time.Millisecond)
				s, err := c.NewStream(ctx, reqHeaders("POST", "/", "web"), false, StreamOptions{})
				if errors.Is(err, context.DeadlineExceeded) {
					cancel() // timed out waiting for its connection: fine
					continue
				}
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				started++
				stop := context.AfterFunc(ctx, s.Reset)
				writerDone := make(chan struct{})
				go func() {
					defer close(writerDone)
					chunk := make([]byte, 512)
					for s.WriteData(chunk, false) == nil {
					}
				}()
				if _, _, err := s.ReadHeaders(ctx); err == nil {
					for buf := make([]byte, 64); err == nil; {
						_, err = s.ReadData(buf)
					}
				}
				<-writerDone
				if stop() { // the deadline never fired: end it ourselves
					s.Reset()
				}
				cancel()
			}
			waitFor(t, "every request to end", func() bool { return statOf(c, statRqActive) == 0 })
			if started == 0 {
				t.Fatal("no request got a connection")
			}
			if statOf(c, statRqReset) != started || c.rqRB.cur.Load() != 0 || c.pendingRB.cur.Load() != 0 {
				t.Fatalf("rq_reset %d, requests breaker %d", statOf(c, statRqReset), c.rqRB.cur.Load())
			}
		})
	}
}

// TestSendWithRead: requests whose head goes out with ReadHeaders' wait
// (SendWithRead) on one reused connection, with and without a body (a
// request with a body is written as usual), answer like any other.
func TestSendWithRead(t *testing.T) {
	srv := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	}))
	m := newTestManager(t, Options{}, staticCluster("web", srv.addr()))
	c := m.Cluster("web")
	for i, tc := range []struct {
		method, path string
		body         []byte
		want         string
	}{
		{"GET", "/a?x=1", nil, "GET /a?x=1 "},
		{"DELETE", "/b", nil, "DELETE /b "},
		{"POST", "/c", []byte("payload"), "POST /c payload"},
		{"GET", "/" + strings.Repeat("long", 2000), nil, "GET /" + strings.Repeat("long", 2000) + " "},
		{"GET", "/d", nil, "GET /d "},
	} {
		rh, body, _ := roundTrip(t, c, reqHeaders(tc.method, tc.path, "web"), tc.body, StreamOptions{SendWithRead: true})
		if rh.Status() != "200" || string(body) != tc.want {
			t.Fatalf("request %d: %s %q, want 200 %q", i, rh.Status(), body, tc.want)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("server saw %d connections, want 1 (reused)", n)
	}
}
