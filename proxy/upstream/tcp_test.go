package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/internal/sockio"
	"github.com/remora-mesh/remora/proxy/filter"
)

// echoListener accepts connections and echoes what they send until the
// test ends.
func echoListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestDialTCP(t *testing.T) {
	t.Run("connects and accounts", func(t *testing.T) {
		addr := echoListener(t)
		m := newTestManager(t, Options{}, staticCluster("c", addr))
		c := m.Cluster("c")
		var info filter.StreamInfo
		tc, err := c.DialTCP(testCtx(t), LBContext{}, &info)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := sockio.TCP(tc.NetConn()); !ok {
			t.Errorf("NetConn is %T, want a TCP socket (zero-copy path)", tc.NetConn())
		}
		if _, err := tc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(tc, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
		if info.UpstreamCluster != "c" || info.UpstreamHost != addr || info.UpstreamLocalAddress == "" {
			t.Errorf("info not filled: %+v", info)
		}
		if statOf(c, statCxActive) != 1 || statOf(c, statCxTotal) != 1 {
			t.Errorf("cx_active %d cx_total %d, want 1 1", statOf(c, statCxActive), statOf(c, statCxTotal))
		}
		tc.Close()
		tc.Close() // idempotent
		if statOf(c, statCxActive) != 0 || statOf(c, statCxDestroy) != 1 || c.cxRB.cur.Load() != 0 {
			t.Errorf("after close: cx_active %d destroy %d breaker %d", statOf(c, statCxActive), statOf(c, statCxDestroy), c.cxRB.cur.Load())
		}
	})
	t.Run("refused is UF", func(t *testing.T) {
		m := newTestManager(t, Options{}, staticCluster("c", closedAddr(t)))
		var info filter.StreamInfo
		_, err := m.Cluster("c").DialTCP(testCtx(t), LBContext{}, &info)
		if flagOf(err) != filter.UpstreamConnectionFailure || info.UpstreamTransportFailureReason != "connection refused" {
			t.Fatalf("err %v flag %v reason %q", err, flagOf(err), info.UpstreamTransportFailureReason)
		}
		if statOf(m.Cluster("c"), statCxConnectFail) != 1 {
			t.Error("connect failure not counted")
		}
	})
	t.Run("connect timeout is UF", func(t *testing.T) {
		hang := func(ctx context.Context, _, _ string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }
		cfg := staticCluster("c", "127.0.0.1:1")
		cfg.ConnectTimeout = config.Duration(20e6) // 20ms
		m := newTestManager(t, Options{DialContext: hang}, cfg)
		var info filter.StreamInfo
		_, err := m.Cluster("c").DialTCP(testCtx(t), LBContext{}, &info)
		if flagOf(err) != filter.UpstreamConnectionFailure || info.UpstreamTransportFailureReason != "connect timeout" {
			t.Fatalf("err %v reason %q", err, info.UpstreamTransportFailureReason)
		}
		if statOf(m.Cluster("c"), statCxConnectTimeout) != 1 {
			t.Error("connect timeout not counted")
		}
	})
	t.Run("max_connections overflow is UO", func(t *testing.T) {
		cfg := staticCluster("c", echoListener(t))
		cfg.CircuitBreakers.MaxConnections = 1
		m := newTestManager(t, Options{}, cfg)
		c := m.Cluster("c")
		first, err := c.DialTCP(testCtx(t), LBContext{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.DialTCP(testCtx(t), LBContext{}, nil)
		if flagOf(err) != filter.UpstreamOverflow || !errors.Is(err, ErrOverflow) {
			t.Fatalf("second dial: %v, want UO", err)
		}
		first.Close()
		again, err := c.DialTCP(testCtx(t), LBContext{}, nil)
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
		again.Close()
	})
	t.Run("no hosts is UH", func(t *testing.T) {
		cfg := ClusterConfig{Name: "c", Type: TypeStrictDNS, Endpoints: []EndpointConfig{{Address: "nowhere.invalid:80"}}}
		m := newTestManager(t, Options{Resolver: &fakeResolverErr{}}, cfg)
		_, err := m.Cluster("c").DialTCP(testCtx(t), LBContext{}, nil)
		if flagOf(err) != filter.NoHealthyUpstream {
			t.Fatalf("err %v, want UH", err)
		}
	})
}
