package client

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// testServer is a real Mixer gRPC server on loopback whose answers the
// test decides. It records every request.
type testServer struct {
	mixerv1.UnimplementedMixerServer
	t    testing.TB
	addr string

	mu      sync.Mutex
	srv     *grpc.Server
	checks  []*mixerv1.CheckRequest
	check   func(*mixerv1.CheckRequest) (*mixerv1.CheckResponse, error)
	report  func(*mixerv1.ReportRequest) error
	reports chan []attributes.Bag // decoded records of every accepted Report
	discard bool                  // accept reports without recording them (benchmarks)
}

func newTestServer(t testing.TB) *testServer {
	s := &testServer{t: t, reports: make(chan []attributes.Bag, 1000)}
	s.start("127.0.0.1:0")
	t.Cleanup(s.stop)
	return s
}

// start serves on addr (":0" picks a port; a restart reuses s.addr).
func (s *testServer) start(addr string) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatal(err)
	}
	srv := grpc.NewServer()
	mixerv1.RegisterMixerServer(srv, s)
	s.mu.Lock()
	s.srv, s.addr = srv, lis.Addr().String()
	s.mu.Unlock()
	go srv.Serve(lis)
}

func (s *testServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (s *testServer) Check(_ context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	s.mu.Lock()
	s.checks = append(s.checks, req)
	h := s.check
	s.mu.Unlock()
	return h(req)
}

func (s *testServer) Report(_ context.Context, req *mixerv1.ReportRequest) (*mixerv1.ReportResponse, error) {
	s.mu.Lock()
	h := s.report
	s.mu.Unlock()
	if h != nil {
		if err := h(req); err != nil {
			return nil, err
		}
	}
	if s.discard {
		return &mixerv1.ReportResponse{}, nil
	}
	bags, err := attributes.DecodeReport(req)
	if err != nil {
		s.t.Errorf("server cannot decode a report: %v", err)
		return nil, err
	}
	s.reports <- bags
	return &mixerv1.ReportResponse{}, nil
}

func (s *testServer) checkCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.checks)
}

// newClient returns a client of s with cfg's non-zero fields, defaults for
// the rest, and its own registry.
func newClient(t *testing.T, s *testServer, cfg Config, now func() time.Time) (*Client, *prometheus.Registry) {
	t.Helper()
	cfg.Address = s.addr
	cfg.ApplyDefaults()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, Options{Registry: reg, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c, reg
}
