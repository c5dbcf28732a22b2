//lint:file-ignore SA1019 the tests serve h2c with x/net's h2c handler, the counterpart of the client under test.

package upstream

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/proxy/filter"
)

// newH2CServer starts an h2c (and HTTP/1.1) server counting connections.
func newH2CServer(t *testing.T, h http.Handler, maxStreams uint32) *countingServer {
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(h2c.NewHandler(h, &http2.Server{MaxConcurrentStreams: maxStreams}))
	cs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}
	cs.Start()
	t.Cleanup(cs.Close)
	return cs
}

func h2Cluster(name, addr, protocol string, maxStreams uint32) ClusterConfig {
	c := staticCluster(name, addr)
	c.Protocol = protocol
	c.HTTP2.MaxConcurrentStreams = maxStreams
	return c
}

func TestHTTP2RequestResponseAndTrailers(t *testing.T) {
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Echo-Trailer")
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("X-UA", r.Header.Get("User-Agent"))
		w.Write(body)
		w.Header().Set("X-Echo-Trailer", r.Trailer.Get("X-Req"))
	}), 0)
	m := newTestManager(t, Options{}, h2Cluster("h2", srv.addr(), ProtocolHTTP2, 0))
	c := m.Cluster("h2")
	s, err := c.NewStream(testCtx(t), reqHeaders("POST", "/x?y=1", "h2", "user-agent", "remora-test", "trailer", "x-req", "te", "gzip", "connection", "keep-alive"), false, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteData([]byte("hello "), false); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteData([]byte("h2"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteTrailers(filter.NewHeaderMap(filter.HeaderField{Name: "x-req", Value: "t1"})); err != nil {
		t.Fatal(err)
	}
	rh, end, err := s.ReadHeaders(testCtx(t))
	if err != nil || end {
		t.Fatalf("ReadHeaders: end %v err %v", end, err)
	}
	body := readAll(t, s)
	tr := s.Trailers()
	s.Close()
	if rh.Status() != "200" || rh.Value("x-proto") != "HTTP/2.0" || rh.Value("x-ua") != "remora-test" || string(body) != "hello h2" {
		t.Fatalf("headers %v body %q", rh.Fields(), body)
	}
	if tr.Value("x-echo-trailer") != "t1" {
		t.Fatalf("trailers %v", tr.Fields())
	}
	if statOf(c, statCxHTTP2Total) != 1 || statOf(c, statRqCompleted) != 1 {
		t.Fatalf("cx_http2_total %d rq_completed %d", statOf(c, statCxHTTP2Total), statOf(c, statRqCompleted))
	}
}

func TestHTTP2MultiplexingOpensSecondConnection(t *testing.T) {
	release := make(chan struct{})
	var inFlight atomic.Int64
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, r.URL.Path)
	}), 0)
	m := newTestManager(t, Options{}, h2Cluster("h2", srv.addr(), ProtocolHTTP2, 2))
	c := m.Cluster("h2")
	var streams []Stream
	for i, path := range []string{"/1", "/2", "/3"} {
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", path, "h2"), true, StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
		waitFor(t, "request at the server", func() bool { return inFlight.Load() == int64(i+1) })
		if want := int64(1 + i/2); srv.conns.Load() != want {
			t.Fatalf("after %d streams the server saw %d connections, want %d", i+1, srv.conns.Load(), want)
		}
	}
	close(release)
	for i, s := range streams {
		rh, _, err := s.ReadHeaders(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, s); rh.Status() != "200" || string(b) != "/"+string(rune('1'+i)) {
			t.Fatalf("stream %d: %s %q", i, rh.Status(), b)
		}
		s.Close()
	}
	// Both connections are ready now; the next request reuses one.
	roundTrip(t, c, reqHeaders("GET", "/4", "h2"), nil, StreamOptions{})
	if srv.conns.Load() != 2 {
		t.Fatalf("server saw %d connections, want 2", srv.conns.Load())
	}
}

func TestHTTP2StreamReset(t *testing.T) {
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reset" {
			panic(http.ErrAbortHandler) // the server resets the stream
		}
	}), 0)
	m := newTestManager(t, Options{}, h2Cluster("h2", srv.addr(), ProtocolHTTP2, 0))
	c := m.Cluster("h2")
	s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/reset", "h2"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.ReadHeaders(testCtx(t))
	s.Reset()
	if f := flagOf(err); f != filter.UpstreamRemoteReset {
		t.Fatalf("err %v (flag %v), want UR", err, f)
	}
	// The connection survives a stream reset.
	roundTrip(t, c, reqHeaders("GET", "/", "h2"), nil, StreamOptions{})
	if srv.conns.Load() != 1 || statOf(c, statRqReset) != 1 {
		t.Fatalf("conns %d rq_reset %d", srv.conns.Load(), statOf(c, statRqReset))
	}
}

func TestUseDownstreamProtocol(t *testing.T) {
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}), 0)
	m := newTestManager(t, Options{}, h2Cluster("any", srv.addr(), ProtocolUseDownstream, 0))
	c := m.Cluster("any")
	for _, tt := range []struct{ down, want string }{
		{filter.ProtocolHTTP11, "HTTP/1.1"},
		{filter.ProtocolHTTP2, "HTTP/2.0"},
		{filter.ProtocolHTTP10, "HTTP/1.1"},
	} {
		_, body, _ := roundTrip(t, c, reqHeaders("GET", "/", "any"), nil, StreamOptions{Protocol: tt.down})
		if string(body) != tt.want {
			t.Errorf("downstream %s went out as %s, want %s", tt.down, body, tt.want)
		}
	}
}

// TestGRPCUnaryThroughNewStream sends unary calls to a grpc-go health
// server and checks the grpc-status trailers arrive intact.
func TestGRPCUnaryThroughNewStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("known", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	served := make(chan struct{})
	go func() { gs.Serve(ln); close(served) }()
	t.Cleanup(func() { gs.Stop(); <-served })

	m := newTestManager(t, Options{}, h2Cluster("grpc", ln.Addr().String(), ProtocolUseDownstream, 0))
	c := m.Cluster("grpc")
	call := func(t *testing.T, service string) (*filter.HeaderMap, []byte, *filter.HeaderMap, bool) {
		msg, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: service})
		frame := make([]byte, 5+len(msg))
		binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
		copy(frame[5:], msg)
		h := reqHeaders("POST", "/grpc.health.v1.Health/Check", "grpc", "content-type", "application/grpc", "te", "trailers")
		s, err := c.NewStream(testCtx(t), h, false, StreamOptions{Protocol: filter.ProtocolHTTP2})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.WriteData(frame, true); err != nil {
			t.Fatal(err)
		}
		rh, end, err := s.ReadHeaders(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if end {
			return rh, nil, nil, true
		}
		return rh, readAll(t, s), s.Trailers(), false
	}

	t.Run("ok", func(t *testing.T) {
		rh, body, tr, _ := call(t, "known")
		if rh.Status() != "200" || rh.Value("content-type") != "application/grpc" {
			t.Fatalf("headers %v", rh.Fields())
		}
		if tr.Value("grpc-status") != "0" {
			t.Fatalf("trailers %v", tr.Fields())
		}
		var resp healthpb.HealthCheckResponse
		if len(body) < 5 || proto.Unmarshal(body[5:], &resp) != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("body %x", body)
		}
	})
	t.Run("not found", func(t *testing.T) {
		rh, _, tr, trailersOnly := call(t, "unknown")
		if !trailersOnly {
			t.Fatalf("a trailers-only response was not reported as ending the stream")
		}
		if status := rh.Value("grpc-status"); status != "5" { // codes.NotFound
			t.Fatalf("grpc-status %q (headers %v trailers %v)", status, rh.Fields(), tr)
		}
	})
}

func TestHTTP2ManagerCloseEndsStreams(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done()
	}), 0)
	m, err := NewManager([]ClusterConfig{h2Cluster("h2", srv.addr(), ProtocolHTTP2, 0)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Cluster("h2").NewStream(testCtx(t), reqHeaders("POST", "/", "h2"), false, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-arrived
	m.Close()
	if _, _, err := s.ReadHeaders(testCtx(t)); err == nil {
		t.Fatal("stream survived Manager.Close")
	}
	if err := s.WriteData([]byte("late"), true); err == nil {
		t.Fatal("write after Manager.Close succeeded")
	}
	s.Reset()
}

func TestHTTP2IdleTimeout(t *testing.T) {
	srv := newH2CServer(t, okHandler("ok"), 0)
	cfg := h2Cluster("h2", srv.addr(), ProtocolHTTP2, 0)
	cfg.IdleTimeout.UnmarshalYAML(yamlScalar("20ms"))
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("h2")
	roundTrip(t, c, reqHeaders("GET", "/", "h2"), nil, StreamOptions{})
	waitFor(t, "idle timeout", func() bool { return statOf(c, statCxIdleTimeout) == 1 })
	roundTrip(t, c, reqHeaders("GET", "/", "h2"), nil, StreamOptions{})
	if srv.conns.Load() != 2 {
		t.Fatalf("server saw %d connections, want 2", srv.conns.Load())
	}
}

func TestHTTP2RejectsInvalidRequest(t *testing.T) {
	srv := newH2CServer(t, okHandler("ok"), 0)
	m := newTestManager(t, Options{}, h2Cluster("h2", srv.addr(), ProtocolHTTP2, 0))
	c := m.Cluster("h2")
	for _, h := range []*filter.HeaderMap{
		reqHeaders("G T", "/", "h2"),
		reqHeaders("POST", "/", "h2", "content-length", "x"),
	} {
		if _, err := c.NewStream(testCtx(t), h, true, StreamOptions{}); err == nil {
			t.Errorf("%v accepted", h.Fields())
		}
	}
	if statOf(c, statRqActive) != 0 || c.rqRB.cur.Load() != 0 {
		t.Fatal("resources leaked")
	}
	roundTrip(t, c, reqHeaders("GET", "/", "h2"), nil, StreamOptions{})
	if srv.conns.Load() != 1 {
		t.Fatalf("server saw %d connections, want 1", srv.conns.Load())
	}
}

func TestHTTP2ReadHeadersDeadline(t *testing.T) {
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
		}
	}), 0)
	m := newTestManager(t, Options{}, h2Cluster("h2", srv.addr(), ProtocolHTTP2, 0))
	c := m.Cluster("h2")
	s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/slow", "h2"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := s.ReadHeaders(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	s.Reset()
	if statOf(c, statRqTimeout) != 1 {
		t.Fatalf("upstream_rq_timeout %d", statOf(c, statRqTimeout))
	}
	// A stream reset leaves the connection usable.
	roundTrip(t, c, reqHeaders("GET", "/", "h2"), nil, StreamOptions{})
	if srv.conns.Load() != 1 {
		t.Fatalf("server saw %d connections", srv.conns.Load())
	}
}

// TestHTTP2TrailersWithoutBody sends trailers straight after the headers,
// racing the transport's encoding of the headers (run under -race).
func TestHTTP2TrailersWithoutBody(t *testing.T) {
	srv := newH2CServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, r.Trailer.Get("X-Only"))
	}), 0)
	m := newTestManager(t, Options{}, h2Cluster("h2", srv.addr(), ProtocolHTTP2, 0))
	c := m.Cluster("h2")
	for range 20 {
		s, err := c.NewStream(testCtx(t), reqHeaders("POST", "/", "h2", "trailer", "x-only"), false, StreamOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteTrailers(filter.NewHeaderMap(filter.HeaderField{Name: "x-only", Value: "t"})); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReadHeaders(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, s); string(b) != "t" {
			t.Fatalf("server saw trailer %q", b)
		}
		s.Close()
	}
}
