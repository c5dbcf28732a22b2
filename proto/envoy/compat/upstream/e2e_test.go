package upstream_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startMixer builds cmd/remora and runs `remora mixer` (embedded default
// policy) as a separate process: our server cannot share a test binary with
// go-control-plane's types.
func startMixer(t *testing.T) (grpcAddr, monAddr string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the remora binary")
	}
	bin := filepath.Join(t.TempDir(), "remora")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build remora: %v", err)
	}
	build := exec.Command(goTool, "build", "-o", bin, "github.com/remora-mesh/remora/cmd/remora")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build remora: %v\n%s", err, out)
	}
	grpcAddr, monAddr = freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "mixer", "--grpc-addr", grpcAddr, "--monitoring-addr", monAddr, "--log-level", "error")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return grpcAddr, monAddr
}

// TestEndToEnd has grpc-go clients built from go-control-plane's stubs call
// `remora mixer`'s ext_authz and access-log services.
func TestEndToEnd(t *testing.T) {
	grpcAddr, monAddr := startMixer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	authz := authv3.NewAuthorizationClient(conn)
	for _, tc := range []struct {
		name, method, path string
		allowed            bool
		status             typev3.StatusCode
		body               string
	}{
		{"get allowed", "GET", "/hello", true, 0, ""},
		{"delete denied", "DELETE", "/hello", false, typev3.StatusCode_MethodNotAllowed, "method DELETE is not allowed\n"},
		{"admin needs role", "GET", "/admin/x", false, typev3.StatusCode_Forbidden, "admin role required\n"},
	} {
		t.Run("check/"+tc.name, func(t *testing.T) {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
					SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5000}},
				}}, Principal: "spiffe://cluster.local/ns/a/sa/b"},
				Request: &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: &authv3.AttributeContext_HttpRequest{
					Id: "1", Method: tc.method, Path: tc.path, Host: "svc", Scheme: "http", Protocol: "HTTP/1.1",
					Headers: map[string]string{":method": tc.method, ":path": tc.path, ":authority": "svc"},
				}},
			}}
			resp, err := authz.Check(ctx, req, grpc.WaitForReady(true))
			if err != nil {
				t.Fatal(err)
			}
			if tc.allowed {
				if resp.GetStatus().GetCode() != int32(codes.OK) || resp.GetOkResponse() == nil {
					t.Fatalf("want OK with ok_response, got %v", resp)
				}
				return
			}
			if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) {
				t.Errorf("status = %v, want PERMISSION_DENIED", resp.GetStatus())
			}
			d := resp.GetDeniedResponse()
			if d.GetStatus().GetCode() != tc.status || d.GetBody() != tc.body {
				t.Errorf("denied_response = %v, want %v %q", d, tc.status, tc.body)
			}
		})
	}

	t.Run("als", func(t *testing.T) {
		stream, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		common := &datav3.AccessLogCommon{
			StartTime: timestamppb.Now(),
			Duration:  durationpb.New(3 * time.Millisecond),
			DownstreamRemoteAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 5000}},
			}},
			UpstreamCluster: "backend",
			AccessLogType:   datav3.AccessLogType_DownstreamEnd,
		}
		entry := &datav3.HTTPAccessLogEntry{
			CommonProperties: common,
			ProtocolVersion:  datav3.HTTPAccessLogEntry_HTTP11,
			Request:          &datav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Authority: "svc", Path: "/x"},
			Response:         &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200), ResponseBodyBytes: 1024},
		}
		msg := &alsv3.StreamAccessLogsMessage{
			Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local", Cluster: "a"}, LogName: "als"},
			LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
				LogEntry: []*datav3.HTTPAccessLogEntry{entry, entry},
			}},
		}
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
		tcp := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{
			LogEntry: []*datav3.TCPAccessLogEntry{{CommonProperties: &datav3.AccessLogCommon{
				AccessLogType: datav3.AccessLogType_TcpConnectionEnd, UpstreamCluster: "db",
			}, ConnectionProperties: &datav3.ConnectionProperties{ReceivedBytes: 10, SentBytes: 20}}},
		}}}
		if err := stream.Send(tcp); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
		metrics := scrape(ctx, t, "http://"+monAddr+"/metrics")
		for _, want := range []string{
			`remora_mixer_als_entries_total{result="ok",type="http"} 2`,
			`remora_mixer_als_entries_total{result="ok",type="tcp"} 1`,
		} {
			if !metrics[want] {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})
}

// scrape returns the sample lines of a Prometheus text page.
func scrape(ctx context.Context, t *testing.T, url string) map[string]bool {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); !strings.HasPrefix(l, "#") {
			lines[l] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
