package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testService answers UnaryCall and FullDuplexCall; a request's
// response_status makes the call fail with that code, and every call sets
// a trailer so trailers are checked end to end.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "unary"))
	if st := in.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, in.GetResponseSize())}}, nil
}

func (testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	stream.SetTrailer(metadata.Pairs("x-trailer", "stream"))
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if st := in.GetResponseStatus(); st != nil && st.GetCode() != 0 {
			return status.Error(codes.Code(st.GetCode()), st.GetMessage())
		}
		for _, p := range in.GetResponseParameters() {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
				return err
			}
		}
	}
}

const grpcConfig = `
admin: {address: "-"}
listeners:
- name: main
  address: 127.0.0.1:0
  filter_chains:
  - http_connection_manager:
      access_log: [{type: test}]
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: {prefix: /grpc.testing.TestService/, grpc: true}
            route: {cluster: grpc, timeout: 0s}
clusters:
- name: grpc
  protocol: use_downstream
  endpoints: [{address: %s}]
`

func TestGRPCThroughProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, testService{})
	go gs.Serve(ln)
	defer gs.Stop()

	s := startProxy(t, fmt.Sprintf(grpcConfig, ln.Addr()))
	conn, err := grpc.NewClient(s.ListenerAddr("main").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Run("unary ok with trailer", func(t *testing.T) {
		drainLogs()
		var trailer metadata.MD
		resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 2048}, grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPayload().GetBody()) != 2048 || trailer.Get("x-trailer")[0] != "unary" {
			t.Fatalf("payload %d trailer %v", len(resp.GetPayload().GetBody()), trailer)
		}
		if info := lastLog(t); info.ResponseCode != 200 || info.ResponseTrailers != nil && info.ResponseTrailers.Value("grpc-status") != "0" {
			t.Fatalf("access log code %d", info.ResponseCode)
		}
	})
	t.Run("unary status", func(t *testing.T) {
		_, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.PermissionDenied), Message: "nope: ü"}})
		if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "nope: ü" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("bidi streaming", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 5; i++ {
			if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i * 100)}, {Size: 1}}}); err != nil {
				t.Fatal(err)
			}
			// Ping-pong: each response must arrive before the next request
			// is sent, so the proxy streams both ways at once.
			for _, want := range []int{i * 100, 1} {
				r, err := stream.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if len(r.GetPayload().GetBody()) != want {
					t.Fatalf("got %d bytes, want %d", len(r.GetPayload().GetBody()), want)
				}
			}
		}
		stream.CloseSend()
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("end of stream: %v", err)
		}
		if stream.Trailer().Get("x-trailer")[0] != "stream" {
			t.Fatalf("trailer %v", stream.Trailer())
		}
	})
	t.Run("streaming status", func(t *testing.T) {
		stream, err := client.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "slow down"}})
		_, err = stream.Recv()
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "slow down" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("client cancel is logged once with DC", func(t *testing.T) {
		drainLogs()
		cctx, ccancel := context.WithCancel(ctx)
		stream, err := client.FullDuplexCall(cctx)
		if err != nil {
			t.Fatal(err)
		}
		stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 1}}})
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		ccancel()
		if info := lastLog(t); !info.ResponseFlags.Has(filter.DownstreamConnectionTermination) {
			t.Fatalf("flags %s, want DC", info.ResponseFlags)
		}
		select {
		case <-sink.ch:
			t.Fatal("stream logged twice")
		case <-time.After(50 * time.Millisecond):
		}
	})
	t.Run("no route is a grpc status", func(t *testing.T) {
		drainLogs()
		err := conn.Invoke(ctx, "/other.Service/Method", &testpb.Empty{}, &testpb.Empty{})
		if st := status.Convert(err); st.Code() != codes.Unimplemented {
			t.Fatalf("got %v, want Unimplemented (local 404 as trailers-only)", err)
		}
		if info := lastLog(t); info.ResponseFlags.String() != "NR" {
			t.Fatalf("flags %s", info.ResponseFlags)
		}
	})
}
