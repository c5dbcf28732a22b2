package server

import (
	"crypto/tls"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	datav3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/remora-mesh/remora/accesslog"
	"github.com/remora-mesh/remora/accesslog/als"
	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/internal/testpki"
	"github.com/remora-mesh/remora/policy"
	"github.com/remora-mesh/remora/proxy/filter"
)

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

var alsStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func alsCommon(flags *datav3.ResponseFlags) *datav3.AccessLogCommon {
	return &datav3.AccessLogCommon{
		StartTime:                  timestamppb.New(alsStart),
		DownstreamRemoteAddress:    sockAddr("10.1.0.5", 40001),
		DownstreamLocalAddress:     sockAddr("10.1.0.9", 9080),
		TimeToLastDownstreamTxByte: durationpb.New(7 * time.Millisecond),
		Duration:                   durationpb.New(7 * time.Millisecond),
		UpstreamCluster:            "inbound|9080||",
		ResponseFlags:              flags,
		TlsProperties: &datav3.TLSProperties{PeerCertificateProperties: &datav3.TLSProperties_CertificateProperties{
			SubjectAltName: []*datav3.TLSProperties_CertificateProperties_SubjectAltName{
				{San: &datav3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: "spiffe://cluster.local/ns/default/sa/productpage"}},
			},
		}},
	}
}

func httpLog(code uint32, path string, flags *datav3.ResponseFlags, grpc bool) *datav3.HTTPAccessLogEntry {
	e := &datav3.HTTPAccessLogEntry{
		CommonProperties: alsCommon(flags),
		ProtocolVersion:  datav3.HTTPAccessLogEntry_HTTP11,
		Request: &datav3.HTTPRequestProperties{
			RequestMethod: corev3.RequestMethod_GET, Scheme: "http", Authority: "reviews:9080", Path: path,
			RequestBodyBytes: 10,
		},
		Response: &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(code), ResponseBodyBytes: 300},
	}
	if grpc {
		e.ProtocolVersion = datav3.HTTPAccessLogEntry_HTTP2
		e.Request.RequestHeaders = map[string]string{"content-type": "application/grpc"}
		e.Response.ResponseTrailers = map[string]string{"grpc-status": "14"}
	}
	return e
}

func alsIdentifier(t testing.TB, logName string) *alsv3.StreamAccessLogsMessage_Identifier {
	md, err := structpb.NewStruct(map[string]any{
		als.MetadataWorkloadName: "reviews-v1",
		als.MetadataNamespace:    "default",
		als.MetadataLabels:       map[string]any{"app": "reviews", "version": "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "reviews-v1-abc.default", Metadata: md}, LogName: logName}
}

func httpMsg(id *alsv3.StreamAccessLogsMessage_Identifier, entries ...*datav3.HTTPAccessLogEntry) *alsv3.StreamAccessLogsMessage {
	return &alsv3.StreamAccessLogsMessage{Identifier: id, LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{
		HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries},
	}}
}

func tcpMsg(id *alsv3.StreamAccessLogsMessage_Identifier, entries ...*datav3.TCPAccessLogEntry) *alsv3.StreamAccessLogsMessage {
	return &alsv3.StreamAccessLogsMessage{Identifier: id, LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{
		TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{LogEntry: entries},
	}}
}

// streamLogs sends msgs on one stream and waits for the server's answer,
// after which every entry has been recorded.
func streamLogs(t testing.TB, ts *testServer, msgs ...*alsv3.StreamAccessLogsMessage) {
	t.Helper()
	st, err := alsv3.NewAccessLogServiceClient(ts.conn).StreamAccessLogs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
}

// labelString renders Istio's labels: "unknown" for the peer labels not
// in set, the given values otherwise, in name order.
func labelString(names []string, set map[string]string) string {
	var parts []string
	for _, n := range names {
		v, ok := set[n]
		if !ok {
			v = "unknown"
		}
		parts = append(parts, n+`="`+v+`"`)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

var peerLabelNames = []string{"source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
	"destination_workload", "destination_workload_namespace", "destination_principal", "destination_app", "destination_version",
	"destination_service", "destination_service_name", "destination_service_namespace"}

func requestLabelString(set map[string]string) string {
	return labelString(append(peerLabelNames, "reporter", "request_protocol", "response_code", "grpc_response_status",
		"response_flags", "connection_security_policy"), set)
}

func tcpLabelString(set map[string]string) string {
	return labelString(append(peerLabelNames, "reporter", "response_flags", "connection_security_policy"), set)
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// An inbound Envoy's stream: the identifier arrives on the first message
// only, and every later message's entries carry its workload. A malformed
// entry is skipped and counted; a periodic entry is skipped.
func TestALSIngestsIntoIstioMetrics(t *testing.T) {
	ts := start(t, Config{Policy: policy.DefaultConfig()}, Options{}, nil)
	bad := httpLog(200, "/bad", nil, false)
	bad.CommonProperties.DownstreamRemoteAddress = sockAddr("not-an-ip", 1)
	periodic := httpLog(200, "/periodic", nil, false)
	periodic.CommonProperties.AccessLogType = datav3.AccessLogType_DownstreamPeriodic
	tcp := &datav3.TCPAccessLogEntry{
		CommonProperties:     alsCommon(&datav3.ResponseFlags{UpstreamConnectionFailure: true}),
		ConnectionProperties: &datav3.ConnectionProperties{ReceivedBytes: 100, SentBytes: 2500},
	}
	badTCP := &datav3.TCPAccessLogEntry{CommonProperties: &datav3.AccessLogCommon{DownstreamLocalAddress: sockAddr("10.0.0.1", 1<<20)}}
	streamLogs(t, ts,
		httpMsg(alsIdentifier(t, "inbound_http"), httpLog(200, "/a", nil, false), httpLog(200, "/b", nil, false)),
		httpMsg(nil, httpLog(503, "/c", &datav3.ResponseFlags{UpstreamConnectionFailure: true, UpstreamRetryLimitExceeded: true}, true), bad, periodic),
		tcpMsg(nil, tcp, badTCP, tcp),
	)
	base := map[string]string{
		"reporter": "destination", "connection_security_policy": "mutual_tls",
		"source_principal":     "cluster.local/ns/default/sa/productpage",
		"destination_workload": "reviews-v1", "destination_workload_namespace": "default",
		"destination_app": "reviews", "destination_version": "v1",
	}
	ok := requestLabelString(merge(base, map[string]string{"request_protocol": "http", "response_code": "200", "grpc_response_status": "", "response_flags": "-"}))
	failed := requestLabelString(merge(base, map[string]string{"request_protocol": "grpc", "response_code": "503", "grpc_response_status": "14", "response_flags": "UF,URX"}))
	tcpL := tcpLabelString(merge(base, map[string]string{"response_flags": "UF"}))
	want := `
# HELP istio_requests_total Requests reported, by source, destination and response.
# TYPE istio_requests_total counter
istio_requests_total{` + ok + `} 2
istio_requests_total{` + failed + `} 1
# HELP istio_tcp_sent_bytes_total Bytes sent to the downstream on TCP connections (connection.sent.bytes).
# TYPE istio_tcp_sent_bytes_total counter
istio_tcp_sent_bytes_total{` + tcpL + `} 5000
# HELP istio_tcp_received_bytes_total Bytes received from the downstream on TCP connections (connection.received.bytes).
# TYPE istio_tcp_received_bytes_total counter
istio_tcp_received_bytes_total{` + tcpL + `} 200
# HELP istio_tcp_connections_closed_total TCP connections closed (connection.event close).
# TYPE istio_tcp_connections_closed_total counter
istio_tcp_connections_closed_total{` + tcpL + `} 2
# HELP remora_mixer_als_entries_total Envoy access-log entries received, by type (http, tcp) and result (ok, malformed, skipped).
# TYPE remora_mixer_als_entries_total counter
remora_mixer_als_entries_total{result="malformed",type="http"} 1
remora_mixer_als_entries_total{result="malformed",type="tcp"} 1
remora_mixer_als_entries_total{result="ok",type="http"} 3
remora_mixer_als_entries_total{result="ok",type="tcp"} 2
remora_mixer_als_entries_total{result="skipped",type="http"} 1
remora_mixer_als_entries_total{result="skipped",type="tcp"} 0
# HELP remora_mixer_decode_errors_total Requests rejected as malformed, by API.
# TYPE remora_mixer_decode_errors_total counter
remora_mixer_decode_errors_total{api="als"} 2
# HELP remora_mixer_als_streams_total StreamAccessLogs streams opened.
# TYPE remora_mixer_als_streams_total counter
remora_mixer_als_streams_total 1
`
	if err := testutil.ScrapeAndCompare(ts.monURL+"/metrics", strings.NewReader(want), "istio_requests_total",
		"istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total", "istio_tcp_connections_closed_total",
		"remora_mixer_als_entries_total", "remora_mixer_decode_errors_total", "remora_mixer_als_streams_total"); err != nil {
		t.Error(err)
	}
	// The request duration histogram observed 7 ms three times.
	if _, body := httpGet(t, ts.monURL+"/metrics"); !strings.Contains(body, `istio_request_duration_milliseconds_sum{`+ok+`} 14`) {
		t.Errorf("istio_request_duration_milliseconds_sum for the 200s is not 14 ms")
	}
}

// A stream without an identifier uses the configured default reporter
// kind; an outbound entry's plain upstream cluster is the destination
// service name.
func TestALSDefaultReporterKind(t *testing.T) {
	cfg := Config{Policy: policy.DefaultConfig()}
	cfg.AccessLogService.DefaultReporterKind = "outbound"
	ts := start(t, cfg, Options{}, nil)
	e := httpLog(404, "/x", nil, false)
	e.CommonProperties.UpstreamCluster = "ratings"
	e.CommonProperties.TlsProperties = nil
	streamLogs(t, ts, httpMsg(nil, e))
	l := requestLabelString(map[string]string{
		"reporter": "source", "connection_security_policy": "unknown", "destination_service_name": "ratings",
		"request_protocol": "http", "response_code": "404", "grpc_response_status": "", "response_flags": "-",
	})
	want := `
# HELP istio_requests_total Requests reported, by source, destination and response.
# TYPE istio_requests_total counter
istio_requests_total{` + l + `} 1
`
	if err := testutil.ScrapeAndCompare(ts.monURL+"/metrics", strings.NewReader(want), "istio_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestALSDisabled(t *testing.T) {
	cfg := Config{Policy: policy.DefaultConfig()}
	cfg.AccessLogService.Disabled = true
	ts := start(t, cfg, Options{}, nil)
	st, err := alsv3.NewAccessLogServiceClient(ts.conn).StreamAccessLogs(ctxT(t))
	if err == nil {
		_, err = st.CloseAndRecv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("disabled service: %v, want UNIMPLEMENTED", err)
	}
}

// The optional file sink writes one line per ingested entry, rendered by
// an Envoy format string from the entry.
func TestALSFileSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "als.log")
	cfg := Config{Policy: policy.DefaultConfig()}
	cfg.AccessLogService.File = &accesslog.FileConfig{
		Path:   path,
		Format: "%START_TIME% %REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_SENT% %DOWNSTREAM_REMOTE_ADDRESS% %UPSTREAM_CLUSTER%\n",
	}
	ts := start(t, cfg, Options{}, nil)
	bad := httpLog(200, "/bad", nil, false)
	bad.Response.ResponseCode = wrapperspb.UInt32(5000)
	streamLogs(t, ts,
		httpMsg(alsIdentifier(t, "inbound"), httpLog(200, "/a", nil, false), bad),
		tcpMsg(nil, &datav3.TCPAccessLogEntry{CommonProperties: alsCommon(nil), ConnectionProperties: &datav3.ConnectionProperties{SentBytes: 42}}),
	)
	if err := ts.srv.als.file.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "2026-01-02T03:04:05.000Z GET /a HTTP/1.1 200 - 300 10.1.0.5:40001 inbound|9080||\n" +
		"2026-01-02T03:04:05.000Z - - - 0 - 42 10.1.0.5:40001 inbound|9080||\n"
	if string(got) != want {
		t.Errorf("file sink wrote:\n%s\nwant:\n%s", got, want)
	}
}

// The sidecar's own gRPC access-log sink, pointed at remora mixer, feeds
// the same metrics: accesslog.New(type grpc) → Log(StreamInfo) → Close
// (which waits for the server's answer) → /metrics.
func TestALSFromSidecarGRPCSink(t *testing.T) {
	ts := start(t, Config{Policy: policy.DefaultConfig()}, Options{}, nil)
	h, err := accesslog.New(accesslog.Config{Type: accesslog.TypeGRPC, GRPC: &accesslog.GRPCConfig{
		Address: ts.grpcAd, LogName: "outbound_sidecar", AdditionalRequestHeadersToLog: []string{"content-type"},
	}}, accesslog.Options{NodeID: "sidecar-1", NodeCluster: "frontend"})
	if err != nil {
		t.Fatal(err)
	}
	info := &filter.StreamInfo{
		StartTime: alsStart, Protocol: filter.ProtocolHTTP11, ResponseCode: 201, BytesSent: 5,
		LastDownstreamTxByteSent: 3 * time.Millisecond, UpstreamCluster: "backend",
		ResponseFlags:           filter.UpstreamRetryLimitExceeded,
		DownstreamRemoteAddress: netip.MustParseAddrPort("127.0.0.1:50000"),
		DownstreamLocalAddress:  netip.MustParseAddrPort("127.0.0.1:15001"),
		RequestHeaders: filter.NewHeaderMap(filter.HeaderField{Name: ":method", Value: "POST"},
			filter.HeaderField{Name: ":path", Value: "/orders"}, filter.HeaderField{Name: "content-type", Value: "application/grpc+proto"}),
		ResponseHeaders: filter.NewHeaderMap(filter.HeaderField{Name: ":status", Value: "201"}),
	}
	for range 3 {
		h.Log(info)
	}
	h.Log(&filter.StreamInfo{StartTime: alsStart, Protocol: filter.ProtocolTCP, BytesSent: 70, BytesReceived: 7, UpstreamCluster: "db"})
	if err := h.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	l := requestLabelString(map[string]string{
		"reporter": "source", "connection_security_policy": "unknown", "destination_service_name": "backend",
		"request_protocol": "grpc", "response_code": "201", "grpc_response_status": "", "response_flags": "URX",
	})
	tl := tcpLabelString(map[string]string{"reporter": "source", "connection_security_policy": "unknown", "destination_service_name": "db", "response_flags": "-"})
	want := `
# HELP istio_requests_total Requests reported, by source, destination and response.
# TYPE istio_requests_total counter
istio_requests_total{` + l + `} 3
# HELP istio_tcp_sent_bytes_total Bytes sent to the downstream on TCP connections (connection.sent.bytes).
# TYPE istio_tcp_sent_bytes_total counter
istio_tcp_sent_bytes_total{` + tl + `} 70
`
	if err := testutil.ScrapeAndCompare(ts.monURL+"/metrics", strings.NewReader(want), "istio_requests_total", "istio_tcp_sent_bytes_total"); err != nil {
		t.Error(err)
	}
}

func TestALSConfigValidation(t *testing.T) {
	cfg := Config{Policy: policy.DefaultConfig()}
	cfg.AccessLogService.DefaultReporterKind = "sideways"
	cfg.AccessLogService.File = &accesslog.FileConfig{Format: "%BOGUS"}
	cfg.ApplyDefaults()
	err := cfg.Validate()
	for _, want := range []string{
		`access_log_service.default_reporter_kind: must be inbound or outbound, not "sideways"`,
		"access_log_service.file.path: required",
		"access_log_service.file.format: ",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate: %v, want %q", err, want)
		}
	}
	parsed, err := ParseConfig([]byte("access_log_service:\n  disabled: true\n  file:\n    path: /tmp/x\n    colour: red\n"))
	if err == nil || !strings.Contains(err.Error(), "access_log_service.file.colour: line 5: unknown field") {
		t.Errorf("strict parse: %v (%+v)", err, parsed)
	}
}

func BenchmarkALSStream(b *testing.B) {
	ts := start(b, Config{Policy: policy.DefaultConfig()}, Options{}, nil)
	entries := make([]*datav3.HTTPAccessLogEntry, 100)
	for i := range entries {
		entries[i] = httpLog(200, "/bench", nil, i%10 == 0)
	}
	st, err := alsv3.NewAccessLogServiceClient(ts.conn).StreamAccessLogs(ctxT(b))
	if err != nil {
		b.Fatal(err)
	}
	msg := httpMsg(alsIdentifier(b, "inbound"), entries...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := st.Send(msg); err != nil {
			b.Fatal(err)
		}
		msg.Identifier = nil
	}
	if _, err := st.CloseAndRecv(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*len(entries))/b.Elapsed().Seconds(), "entries/s")
}

// A stream Envoy keeps open does not hold the server's graceful stop for
// its timeout: it ends with UNAVAILABLE, after the entries already
// received were recorded.
func TestALSStreamEndsOnStop(t *testing.T) {
	cfg := Config{Policy: policy.DefaultConfig()}
	cfg.GRPC.ShutdownTimeout = config.Duration(time.Minute) // longer than stop waits
	ts := start(t, cfg, Options{}, nil)
	recorded := make(chan struct{}, 1)
	ts.srv.als.onMessage = func() { recorded <- struct{}{} }
	st, err := alsv3.NewAccessLogServiceClient(ts.conn).StreamAccessLogs(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(httpMsg(alsIdentifier(t, "inbound"), httpLog(200, "/a", nil, false))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-recorded:
	case <-ctxT(t).Done():
		t.Fatal("message not recorded")
	}
	ts.stop(t) // fails the test if Serve does not return within 10s
	if _, err := st.CloseAndRecv(); status.Code(err) != codes.Unavailable {
		t.Errorf("stream after stop: %v, want UNAVAILABLE", err)
	}
	if err := testutil.GatherAndCompare(ts.reg, strings.NewReader(`
# HELP remora_mixer_als_entries_total Envoy access-log entries received, by type (http, tcp) and result (ok, malformed, skipped).
# TYPE remora_mixer_als_entries_total counter
remora_mixer_als_entries_total{result="malformed",type="http"} 0
remora_mixer_als_entries_total{result="malformed",type="tcp"} 0
remora_mixer_als_entries_total{result="ok",type="http"} 1
remora_mixer_als_entries_total{result="ok",type="tcp"} 0
remora_mixer_als_entries_total{result="skipped",type="http"} 0
remora_mixer_als_entries_total{result="skipped",type="tcp"} 0
`), "remora_mixer_als_entries_total"); err != nil {
		t.Error(err)
	}
}

// With mTLS to the server, the caller's certificate identity is the
// principal attribute of every entry, overriding what the entry says.
func TestALSCallerIdentity(t *testing.T) {
	const id = "spiffe://cluster.local/ns/istio-system/sa/envoy"
	pki := testpki.New(t, id)
	cfg := Config{Policy: policy.DefaultConfig()}
	cfg.GRPC.TLS = TLSConfig{CertFile: pki.ServerCertFile, KeyFile: pki.ServerKeyFile, ClientCAFile: pki.CAFile, RequireClientCert: true,
		PrincipalAttribute: "source.principal"}
	ts := start(t, cfg, Options{}, &tls.Config{RootCAs: pki.CAPool(), Certificates: []tls.Certificate{pki.ClientCertificate(t)}, ServerName: "127.0.0.1"})
	streamLogs(t, ts, httpMsg(alsIdentifier(t, "inbound"), httpLog(200, "/a", nil, false)))
	if _, body := httpGet(t, ts.monURL+"/metrics"); !strings.Contains(body, `source_principal="`+id+`"`) {
		t.Errorf("source_principal is not the caller's identity:\n%s", body)
	}
}
