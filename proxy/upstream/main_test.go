package upstream

import (
	"bytes"
	"context"
	"errors"
	"github.com/remora-mesh/remora/internal/leakcheck"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/proxy/filter"
)

// waitFor polls cond until it holds or the test's 5s budget is spent.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func staticCluster(name string, addrs ...string) ClusterConfig {
	c := ClusterConfig{Name: name}
	for _, a := range addrs {
		c.Endpoints = append(c.Endpoints, EndpointConfig{Address: a})
	}
	return c
}

func newTestManager(t testing.TB, opts Options, cfgs ...ClusterConfig) *Manager {
	t.Helper()
	if opts.Logger == nil {
		if tt, ok := t.(*testing.T); ok {
			opts.Logger = zaptest.NewLogger(tt)
		}
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	m, err := NewManager(cfgs, opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// countingServer is an httptest server that counts the connections it
// accepted.
type countingServer struct {
	*httptest.Server
	conns atomic.Int64
}

func newCountingServer(t testing.TB, h http.Handler) *countingServer {
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(h)
	cs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}
	cs.Start()
	t.Cleanup(cs.Close)
	return cs
}

func (cs *countingServer) addr() string { return cs.Listener.Addr().String() }

func reqHeaders(method, path, authority string, extra ...string) *filter.HeaderMap {
	h := filter.NewHeaderMap(
		filter.HeaderField{Name: ":method", Value: method},
		filter.HeaderField{Name: ":path", Value: path},
		filter.HeaderField{Name: ":authority", Value: authority},
		filter.HeaderField{Name: ":scheme", Value: "http"},
	)
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return h
}

// roundTrip sends a request with an optional body and reads the whole
// response.
func roundTrip(t testing.TB, c *Cluster, h *filter.HeaderMap, body []byte, opts StreamOptions) (*filter.HeaderMap, []byte, *filter.HeaderMap) {
	t.Helper()
	ctx := testCtx(t)
	s, err := c.NewStream(ctx, h, body == nil, opts)
	if err != nil {
		t.Fatalf("NewStream: %v", err)
	}
	if body != nil {
		if err := s.WriteData(body, true); err != nil {
			s.Reset()
			t.Fatalf("WriteData: %v", err)
		}
	}
	rh, end, err := s.ReadHeaders(ctx)
	if err != nil {
		s.Reset()
		t.Fatalf("ReadHeaders: %v", err)
	}
	var out bytes.Buffer
	if !end {
		buf := make([]byte, 4096)
		for {
			n, err := s.ReadData(buf)
			out.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				s.Reset()
				t.Fatalf("ReadData: %v", err)
			}
		}
	}
	tr := s.Trailers()
	s.Close()
	return rh, out.Bytes(), tr
}

func flagOf(err error) filter.ResponseFlags {
	var e *Error
	if errors.As(err, &e) {
		return e.Flag
	}
	return 0
}

func statOf(c *Cluster, s stat) int64 { return c.stats.get(s) }

func yamlScalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

// fakeResolverErr fails every lookup, as a resolver does for a name that
// does not exist.
type fakeResolverErr struct{}

func (*fakeResolverErr) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestMain fails the run when a goroutine of this package outlives the
// tests (pools, dials, DNS refreshers, HTTP/2 streams) or an HTTP/2 client
// connection is left open.
func TestMain(m *testing.M) {
	leakcheck.Main(m, "remora/proxy/upstream.", "http2.(*ClientConn).readLoop")
}
