package server

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unaryMetrics counts unary RPCs in the go-grpc-middleware convention.
func (s *Server) unaryMetrics(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	mm := s.metrics.method(info.FullMethod, "unary")
	mm.started.Inc()
	start := time.Now()
	resp, err := handler(ctx, req)
	mm.done(status.Code(err), start)
	return resp, err
}

// streamMetrics counts streaming RPCs (health Watch, reflection).
func (s *Server) streamMetrics(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	typ := "bidi_stream"
	switch {
	case info.IsClientStream && !info.IsServerStream:
		typ = "client_stream"
	case !info.IsClientStream && info.IsServerStream:
		typ = "server_stream"
	}
	mm := s.metrics.method(info.FullMethod, typ)
	mm.started.Inc()
	start := time.Now()
	err := handler(srv, ss)
	mm.done(status.Code(err), start)
	return err
}

// unaryLimit admits at most max_inflight_requests unary RPCs at once and
// answers the others RESOURCE_EXHAUSTED at once, so that overload sheds
// load instead of growing an unbounded queue. Health checks are exempt:
// an overloaded server is still alive.
func (s *Server) unaryLimit(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if s.sem == nil || info.FullMethod == "/grpc.health.v1.Health/Check" {
		return handler(ctx, req)
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.metrics.rejected.WithLabelValues(info.FullMethod).Inc()
		return nil, status.Errorf(codes.ResourceExhausted, "mixer: overloaded: %d requests in flight", cap(s.sem))
	}
	s.metrics.inflight.Inc()
	defer func() {
		s.metrics.inflight.Dec()
		<-s.sem
	}()
	return handler(ctx, req)
}
