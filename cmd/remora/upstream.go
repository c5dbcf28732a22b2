package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func init() {
	register(&command{name: "sample-upstream", summary: "run the demo's sample application (HTTP and gRPC)", run: runSampleUpstream})
}

const sampleUpstreamUsage = `--http ADDR --grpc ADDR

Runs the small application the demo puts behind the sidecar: an HTTP server
answering every path with a short JSON document (GET /reviews/1 ...), and a
gRPC server with the standard health service (grpc.health.v1.Health).`

func runSampleUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sample-upstream", sampleUpstreamUsage, stderr)
	httpAddr := fs.String("http", "127.0.0.1:8000", "HTTP listen `address`")
	grpcAddr := fs.String("grpc", "127.0.0.1:8001", "gRPC listen `address`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		hl.Close()
		return err
	}
	hs := &http.Server{Handler: http.HandlerFunc(sampleHandler), ReadHeaderTimeout: 10 * time.Second}
	gs := grpc.NewServer()
	hc := health.NewServer()
	hc.SetServingStatus("reviews", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hc)
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(hl) }()
	go func() { errc <- gs.Serve(gl) }()
	fmt.Fprintf(stdout, "sample upstream: HTTP on %s, gRPC on %s\n", hl.Addr(), gl.Addr())
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	gs.GracefulStop()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// sampleHandler answers like a small reviews service.
func sampleHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	id := strings.TrimPrefix(r.URL.Path, "/")
	fmt.Fprintf(w, `{"service":"reviews","path":%q,"method":%q,"reviews":[{"reviewer":"Reviewer1","text":"An extremely entertaining play by Shakespeare."}]}`+"\n", "/"+id, r.Method)
}
