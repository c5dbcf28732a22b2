package accesslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/accesslog/als"
	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/proxy/filter"
)

// alsServer is an in-process Envoy access-log service that forwards every
// message it receives.
type alsServer struct {
	alsv3.UnimplementedAccessLogServiceServer
	msgs chan *alsv3.StreamAccessLogsMessage
	srv  *grpc.Server
	addr string
}

func (a *alsServer) StreamAccessLogs(st alsv3.AccessLogService_StreamAccessLogsServer) error {
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(&alsv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		a.msgs <- m
	}
}

// startALS serves on addr ("127.0.0.1:0" for any port) and stops at the
// end of the test.
func startALS(t *testing.T, addr string, msgs chan *alsv3.StreamAccessLogsMessage) *alsServer {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &alsServer{msgs: msgs, srv: grpc.NewServer(), addr: lis.Addr().String()}
	alsv3.RegisterAccessLogServiceServer(a.srv, a)
	served := make(chan struct{})
	go func() { defer close(served); a.srv.Serve(lis) }()
	t.Cleanup(func() { a.srv.Stop(); <-served })
	return a
}

// receive reads messages until n entries have arrived.
func receive(t *testing.T, ctx context.Context, msgs chan *alsv3.StreamAccessLogsMessage, n int) (ids []string, batches []*alsv3.StreamAccessLogsMessage) {
	t.Helper()
	for len(ids) < n {
		select {
		case m := <-msgs:
			batches = append(batches, m)
			for _, e := range m.GetHttpLogs().GetLogEntry() {
				ids = append(ids, e.GetRequest().GetRequestId())
			}
		case <-ctx.Done():
			t.Fatalf("received %d of %d entries: %v", len(ids), n, ctx.Err())
		}
	}
	return ids, batches
}

func newGRPCHandler(t *testing.T, gc GRPCConfig, opts Options) (*Handler, *Metrics) {
	t.Helper()
	m, err := NewMetrics(prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	opts.Metrics = m
	opts.NodeID, opts.NodeCluster = "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local", "backend"
	if gc.LogName == "" {
		gc.LogName = "remora-als"
	}
	if gc.ReconnectBaseInterval == 0 {
		gc.ReconnectBaseInterval = config.Duration(5 * time.Millisecond)
		gc.ReconnectMaxInterval = config.Duration(50 * time.Millisecond)
	}
	h, err := New(Config{Name: "als", Type: TypeGRPC, GRPC: &gc}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Close(ctx)
	})
	return h, m
}

func checkIdentifier(t *testing.T, m *alsv3.StreamAccessLogsMessage) {
	t.Helper()
	id := m.GetIdentifier()
	if id.GetLogName() != "remora-als" || id.GetNode().GetId() != "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local" || id.GetNode().GetCluster() != "backend" {
		t.Errorf("identifier = %v", id)
	}
}

func TestGRPCSinkStreams(t *testing.T) {
	ctx := testCtx(t)
	msgs := make(chan *alsv3.StreamAccessLogsMessage, 100)
	srv := startALS(t, "127.0.0.1:0", msgs)
	flushed := make(chan bool, 100)
	// One entry fills the 1-byte flush size: every Log triggers a send.
	h, m := newGRPCHandler(t, GRPCConfig{Address: srv.addr, BufferSizeBytes: 1,
		AdditionalRequestHeadersToLog: []string{"X-Tenant"}, MetadataNamespaces: []string{"envoy.filters.http.ext_authz"}},
		Options{onFlush: func(byTimer bool) { flushed <- byTimer }})
	info := fullStream()
	h.Log(info)
	_, batches := receive(t, ctx, msgs, 1)
	checkIdentifier(t, batches[0])
	want := als.HTTPEntry(info, als.NewEntryOptions([]string{"x-tenant"}, nil, nil, []string{"envoy.filters.http.ext_authz"}))
	if got := batches[0].GetHttpLogs().GetLogEntry()[0]; !proto.Equal(got, want) {
		t.Errorf("entry = %v\nwant %v", got, want)
	}
	if got := want.GetRequest().GetRequestHeaders()["x-tenant"]; got != "acme" {
		t.Errorf("additional header = %q", got)
	}
	// Later messages on the same stream carry no identifier.
	h.Log(idStream("second"))
	_, batches = receive(t, ctx, msgs, 1)
	if batches[0].Identifier != nil {
		t.Error("identifier repeated on the same stream")
	}
	for range 2 {
		select {
		case byTimer := <-flushed:
			if byTimer {
				t.Error("flush by timer, want by size")
			}
		case <-ctx.Done():
			t.Fatal("no flush reported")
		}
	}
	if got := counter(t, m, m.flushedBySize, "als"); got != 2 {
		t.Errorf("flushed_by_size = %d", got)
	}
	if got := counter(t, m, m.logsWritten, "als"); got != 2 {
		t.Errorf("logs_written = %d", got)
	}
	if got := counter(t, m, m.streamsOpened, "als"); got != 1 {
		t.Errorf("streams_opened = %d", got)
	}
}

func TestGRPCSinkTimerFlush(t *testing.T) {
	ctx := testCtx(t)
	msgs := make(chan *alsv3.StreamAccessLogsMessage, 100)
	srv := startALS(t, "127.0.0.1:0", msgs)
	flushed := make(chan bool, 100)
	h, m := newGRPCHandler(t, GRPCConfig{Address: srv.addr, BufferFlushInterval: config.Duration(5 * time.Millisecond)},
		Options{onFlush: func(byTimer bool) { flushed <- byTimer }})
	for i := range 3 {
		h.Log(idStream(fmt.Sprint(i)))
	}
	ids, _ := receive(t, ctx, msgs, 3)
	if fmt.Sprint(ids) != "[0 1 2]" {
		t.Errorf("ids %v", ids)
	}
	select {
	case byTimer := <-flushed:
		if !byTimer {
			t.Error("flush not by timer")
		}
	case <-ctx.Done():
		t.Fatal("no flush")
	}
	if got := counter(t, m, m.flushedByTimer, "als"); got < 1 {
		t.Errorf("flushed_by_timer = %d", got)
	}
}

// TestGRPCSinkOutage stops the service, keeps logging (within the buffer
// and beyond it), restarts the service on the same port, and checks that
// every buffered entry arrives, in order, on a new stream with an
// identifier, and that the overflow was counted.
func TestGRPCSinkOutage(t *testing.T) {
	ctx := testCtx(t)
	msgs := make(chan *alsv3.StreamAccessLogsMessage, 1000)
	srv := startALS(t, "127.0.0.1:0", msgs)
	opts := als.NewEntryOptions(nil, nil, nil, nil)
	entrySize := proto.Size(als.HTTPEntry(idStream("0000"), opts))
	const fit = 25
	state := make(chan bool, 100)
	h, m := newGRPCHandler(t, GRPCConfig{
		Address:             srv.addr,
		BufferFlushInterval: config.Duration(time.Hour),
		BufferSizeBytes:     fit * entrySize,
		MaxBufferBytes:      fit * entrySize,
	}, Options{onState: func(up bool) { state <- up }})
	waitState := func(want bool) {
		t.Helper()
		for {
			select {
			case up := <-state:
				if up == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("stream never became connected=%v", want)
			}
		}
	}

	for i := range 10 {
		h.Log(idStream(fmt.Sprintf("%04d", i)))
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ids, batches := receive(t, ctx, msgs, 10)
	checkIdentifier(t, batches[0])
	waitState(true)

	srv.srv.Stop()
	waitState(false)

	for i := 10; i < 10+fit+5; i++ {
		h.Log(idStream(fmt.Sprintf("%04d", i)))
	}
	if got := counter(t, m, m.logsDropped, "als"); got != 5 {
		t.Errorf("logs_dropped during the outage = %d, want 5", got)
	}
	// Flush cannot finish while the service is down.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if err := h.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush during the outage = %v", err)
	}
	cancel()

	startALS(t, srv.addr, msgs)
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	more, batches := receive(t, ctx, msgs, fit)
	checkIdentifier(t, batches[0])
	ids = append(ids, more...)
	for i, id := range ids {
		if want := fmt.Sprintf("%04d", i); id != want {
			t.Fatalf("entry %d has id %q, want %q (all: %v)", i, id, want, ids)
		}
	}
	if got := counter(t, m, m.logsWritten, "als"); got != 10+fit {
		t.Errorf("logs_written = %d, want %d", got, 10+fit)
	}
	if got := counter(t, m, m.streamsOpened, "als"); got != 2 {
		t.Errorf("streams_opened = %d, want 2", got)
	}
	if got := counter(t, m, m.streamsFailed, "als"); got < 1 {
		t.Errorf("streams_failed = %d", got)
	}
	select {
	case extra := <-msgs:
		t.Errorf("unexpected extra message %v", extra)
	default:
	}
}

// TestGRPCSinkCloseDrains checks that Close delivers what is buffered.
func TestGRPCSinkCloseDrains(t *testing.T) {
	ctx := testCtx(t)
	msgs := make(chan *alsv3.StreamAccessLogsMessage, 100)
	srv := startALS(t, "127.0.0.1:0", msgs)
	h, m := newGRPCHandler(t, GRPCConfig{Address: srv.addr, BufferFlushInterval: config.Duration(time.Hour)}, Options{})
	for i := range 5 {
		h.Log(idStream(fmt.Sprint(i)))
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// CloseAndRecv waited for the service: everything is already here.
	if len(msgs) == 0 {
		t.Fatal("nothing delivered by Close")
	}
	receive(t, ctx, msgs, 5)
	h.Log(idStream("late"))
	if got := counter(t, m, m.logsDropped, "als"); got != 1 {
		t.Errorf("logs_dropped = %d", got)
	}
	if err := h.Flush(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v", err)
	}
}

// TestGRPCSinkUnreachableClose closes a sink whose service never came up:
// Close returns and the buffered entries are counted as dropped.
func TestGRPCSinkUnreachableClose(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	h, m := newGRPCHandler(t, GRPCConfig{Address: addr, BufferFlushInterval: config.Duration(time.Millisecond)}, Options{})
	for i := range 3 {
		h.Log(idStream(fmt.Sprint(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h.Close(ctx)
	if got := counter(t, m, m.logsDropped, "als"); got != 3 {
		t.Errorf("logs_dropped = %d, want 3", got)
	}
	if got := counter(t, m, m.logsWritten, "als"); got != 0 {
		t.Errorf("logs_written = %d", got)
	}
}

func BenchmarkGRPCSinkLog(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	a := &alsServer{msgs: make(chan *alsv3.StreamAccessLogsMessage, 1<<16)}
	alsv3.RegisterAccessLogServiceServer(srv, a)
	go srv.Serve(lis)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for range a.msgs {
		}
	}()
	gc := GRPCConfig{Address: lis.Addr().String(), LogName: "bench"}
	h, err := New(Config{Type: TypeGRPC, GRPC: &gc}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		h.Close(context.Background())
		srv.Stop()
		close(a.msgs)
		<-drained
	}()
	info := fullStream()
	b.ReportAllocs()
	for b.Loop() {
		h.Log(info)
	}
}

// TestGRPCSinkTCPEntries checks that streams without an HTTP protocol are
// sent as TCP entries, in order, in messages of a single kind.
func TestGRPCSinkTCPEntries(t *testing.T) {
	ctx := testCtx(t)
	msgs := make(chan *alsv3.StreamAccessLogsMessage, 100)
	srv := startALS(t, "127.0.0.1:0", msgs)
	h, _ := newGRPCHandler(t, GRPCConfig{Address: srv.addr, BufferFlushInterval: config.Duration(time.Hour)}, Options{})
	tcp := func(cluster string) *filter.StreamInfo {
		return &filter.StreamInfo{Protocol: filter.ProtocolTCP, UpstreamCluster: cluster, BytesReceived: 10, BytesSent: 20}
	}
	web := func(cluster string) *filter.StreamInfo {
		info := idStream(cluster)
		info.Protocol, info.UpstreamCluster = filter.ProtocolHTTP11, cluster
		return info
	}
	for _, info := range []*filter.StreamInfo{web("h1"), web("h2"), tcp("t1"), web("h3")} {
		h.Log(info)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// One description per message: its kind and its entries' clusters.
	var got []string
	for entries := 0; entries < 4; {
		select {
		case m := <-msgs:
			desc := ""
			for _, e := range m.GetHttpLogs().GetLogEntry() {
				desc += " http:" + e.GetCommonProperties().GetUpstreamCluster()
				entries++
			}
			for _, e := range m.GetTcpLogs().GetLogEntry() {
				if e.GetConnectionProperties().GetReceivedBytes() != 10 || e.GetConnectionProperties().GetSentBytes() != 20 {
					t.Errorf("tcp entry %v", e)
				}
				desc += " tcp:" + e.GetCommonProperties().GetUpstreamCluster()
				entries++
			}
			got = append(got, desc)
		case <-ctx.Done():
			t.Fatalf("got %q", got)
		}
	}
	if fmt.Sprint(got) != "[ http:h1 http:h2  tcp:t1  http:h3]" {
		t.Errorf("messages %q", got)
	}
}

// TestGRPCBackoff checks the reconnect delays: doubling from the base to
// the maximum, each jittered between half and all of the interval.
func TestGRPCBackoff(t *testing.T) {
	s := &grpcSink{
		cfg:     &GRPCConfig{ReconnectBaseInterval: config.Duration(10 * time.Millisecond), ReconnectMaxInterval: config.Duration(80 * time.Millisecond)},
		logger:  zap.NewNop(),
		limiter: logLimiter{every: time.Hour},
	}
	for i, want := range []time.Duration{10, 20, 40, 80, 80} {
		want *= time.Millisecond
		before := time.Now()
		s.backoff(errors.New("down"))
		if s.retry != want {
			t.Errorf("attempt %d: interval %v, want %v", i, s.retry, want)
		}
		if wait := s.nextTry.Sub(before); wait < want/2 || wait > want+time.Second {
			t.Errorf("attempt %d: waits %v, want within [%v, %v]", i, wait, want/2, want)
		}
	}
}
