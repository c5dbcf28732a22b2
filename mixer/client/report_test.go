package client

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

func reportBag(i int) attributes.Bag {
	bd := attributes.NewBuilder(3)
	bd.Set(attributes.RequestID, attributes.String("r"+strconv.Itoa(i)))
	bd.Set(attributes.ResponseCode, attributes.Int64(200))
	bd.Set(attributes.RequestPath, attributes.String("/p"))
	return bd.Build()
}

// receive collects n records from s, failing after a deadline.
func receive(t *testing.T, s *testServer, n int) []attributes.Bag {
	t.Helper()
	var got []attributes.Bag
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case bags := <-s.reports:
			got = append(got, bags...)
		case <-deadline:
			t.Fatalf("received %d records, want %d", len(got), n)
		}
	}
	return got
}

// nextBatch returns the records of the next Report the server accepts.
func nextBatch(t *testing.T, s *testServer) []attributes.Bag {
	t.Helper()
	select {
	case bags := <-s.reports:
		return bags
	case <-time.After(10 * time.Second):
		t.Fatal("no report arrived")
		return nil
	}
}

func ids(bags []attributes.Bag) []string {
	out := make([]string, len(bags))
	for i, b := range bags {
		v, _ := b.Get(attributes.RequestID)
		out[i] = v.StringValue()
	}
	return out
}

func TestReportFlushBySize(t *testing.T) {
	srv := newTestServer(t)
	c, _ := newClient(t, srv, Config{Report: ReportConfig{MaxBatchEntries: 3, MaxBatchTime: 1e12}}, nil)
	for i := range 6 {
		c.Report(c.ReportBuilder(reportBag(i)))
	}
	first, second := nextBatch(t, srv), nextBatch(t, srv)
	if len(first) != 3 || len(second) != 3 {
		t.Fatalf("batches of %d and %d records, want 3 and 3", len(first), len(second))
	}
	if got := ids(append(first, second...)); got[0] != "r0" || got[5] != "r5" {
		t.Fatalf("records out of order: %v", got)
	}
	if got := testutil.ToFloat64(c.m.reportFlushBySize); got != 2 {
		t.Fatalf("flushed by size %v times", got)
	}
}

func TestReportFlushByTimer(t *testing.T) {
	srv := newTestServer(t)
	c, _ := newClient(t, srv, Config{Report: ReportConfig{MaxBatchEntries: 100, MaxBatchTime: config5ms}}, nil)
	c.Report(c.ReportBuilder(reportBag(1)))
	if got := receive(t, srv, 1); ids(got)[0] != "r1" {
		t.Fatalf("got %v", ids(got))
	}
	if got := testutil.ToFloat64(c.m.reportFlushByTimer); got != 1 {
		t.Fatalf("flushed by timer %v times", got)
	}
}

const config5ms = 5e6

func TestReportEncodings(t *testing.T) {
	for _, enc := range []Encoding{EncodingDelta, EncodingIndependent} {
		t.Run(string(enc), func(t *testing.T) {
			srv := newTestServer(t)
			var sem []mixerv1.ReportRequest_RepeatedAttributesSemantics
			srv.report = func(req *mixerv1.ReportRequest) error {
				sem = append(sem, req.RepeatedAttributesSemantics)
				return nil
			}
			c, _ := newClient(t, srv, Config{Report: ReportConfig{MaxBatchEntries: 4, Encoding: enc}}, nil)
			for i := range 4 {
				c.Report(c.ReportBuilder(reportBag(i)))
			}
			got := receive(t, srv, 4)
			for i, b := range got {
				if !b.Equal(reportBag(i)) {
					t.Fatalf("record %d: %v", i, b)
				}
			}
			want := mixerv1.ReportRequest_DELTA_ENCODING
			if enc == EncodingIndependent {
				want = mixerv1.ReportRequest_INDEPENDENT_ENCODING
			}
			if sem[0] != want {
				t.Fatalf("semantics %v, want %v", sem[0], want)
			}
		})
	}
}

// TestReportRetriesFailedBatches: failed batches are retried, not dropped.
func TestReportRetriesFailedBatches(t *testing.T) {
	srv := newTestServer(t)
	failures := 3
	srv.report = func(*mixerv1.ReportRequest) error {
		if failures > 0 {
			failures--
			return status.Error(codes.Unavailable, "busy")
		}
		return nil
	}
	c, _ := newClient(t, srv, Config{Report: ReportConfig{MaxBatchEntries: 2, BaseRetryWait: 1e6, MaxRetryWait: 2e6}}, nil)
	for i := range 4 {
		c.Report(c.ReportBuilder(reportBag(i)))
	}
	if got := ids(receive(t, srv, 4)); got[0] != "r0" || got[3] != "r3" {
		t.Fatalf("got %v", got)
	}
	if f := testutil.ToFloat64(c.m.reportSendFailures); f != 3 {
		t.Fatalf("failures = %v, want 3", f)
	}
	if d := testutil.ToFloat64(c.m.reportRecordsDropped); d != 0 {
		t.Fatalf("dropped %v records", d)
	}
}

// TestReportSurvivesServerRestart: records sent while the server is down
// arrive once it is back on the same address.
func TestReportSurvivesServerRestart(t *testing.T) {
	srv := newTestServer(t)
	c, _ := newClient(t, srv, Config{Report: ReportConfig{MaxBatchEntries: 5, BaseRetryWait: 1e6, MaxRetryWait: 5e7, Timeout: 2e8}}, nil)
	acked := make(chan int, 10)
	c.batcher.mu.Lock()
	c.batcher.delivered = func(n int) { acked <- n }
	c.batcher.mu.Unlock()
	c.Report(c.ReportBuilder(reportBag(0)))
	c.Flush()
	receive(t, srv, 1)
	// Stop only once the client has the acknowledgement: a batch whose
	// acknowledgement is lost is sent again (at least once, never lost).
	<-acked

	srv.stop()
	for i := 1; i <= 20; i++ {
		c.Report(c.ReportBuilder(reportBag(i)))
	}
	c.Flush()
	srv.start(srv.addr)
	got := ids(receive(t, srv, 20))
	for i, id := range got {
		if id != "r"+strconv.Itoa(i+1) {
			t.Fatalf("record %d is %s: %v", i, id, got)
		}
	}
	if d := testutil.ToFloat64(c.m.reportRecordsDropped); d != 0 {
		t.Fatalf("dropped %v records", d)
	}
}

// TestReportQueueBound: beyond the queue bound the oldest records are
// dropped and counted; the newest are delivered.
func TestReportQueueBound(t *testing.T) {
	srv := newTestServer(t)
	release := make(chan struct{})
	blocked := make(chan struct{}, 1)
	srv.report = func(*mixerv1.ReportRequest) error {
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	c, reg := newClient(t, srv, Config{Report: ReportConfig{MaxBatchEntries: 2, MaxQueueEntries: 6}}, nil)
	c.Report(c.ReportBuilder(reportBag(0)))
	c.Report(c.ReportBuilder(reportBag(1))) // batch r0,r1 goes out and blocks in the server
	<-blocked
	for i := 2; i < 12; i++ {
		c.Report(c.ReportBuilder(reportBag(i)))
	}
	// 2 in flight + 4 waiting fit; r2..r7 were dropped as the oldest waiting.
	if d := testutil.ToFloat64(c.m.reportRecordsDropped); d != 6 {
		t.Fatalf("dropped %v, want 6", d)
	}
	if n := testutil.ToFloat64(c.m.reportQueueRecords); n != 6 {
		t.Fatalf("queue gauge %v, want 6", n)
	}
	close(release)
	if got := ids(receive(t, srv, 6)); got[0] != "r0" || got[1] != "r1" || got[2] != "r8" || got[5] != "r11" {
		t.Fatalf("delivered %v, want r0 r1 r8..r11", got)
	}
	if n, err := testutil.GatherAndCount(reg, "remora_mixer_client_report_records_dropped_total"); err != nil || n != 1 {
		t.Fatalf("dropped counter not exported: %d %v", n, err)
	}
}

// TestCloseFlushes: Close delivers what is queued; with the server gone it
// gives up at the deadline and counts the loss.
func TestCloseFlushes(t *testing.T) {
	srv := newTestServer(t)
	cfg := Config{Address: srv.addr, Report: ReportConfig{MaxBatchEntries: 100, MaxBatchTime: 1e12}}
	cfg.ApplyDefaults()
	c, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Report(c.ReportBuilder(reportBag(1)))
	c.Report(c.ReportBuilder(reportBag(2)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	receive(t, srv, 2)

	srv.stop()
	c, err = New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Report(c.ReportBuilder(reportBag(3)))
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := c.Close(short); err == nil {
		t.Fatal("Close reported success with the server down")
	}
	if d := testutil.ToFloat64(c.m.reportRecordsDropped); d != 1 {
		t.Fatalf("dropped %v, want 1", d)
	}
	c.Report(c.ReportBuilder(reportBag(4))) // after Close: dropped, counted, no panic
	if d := testutil.ToFloat64(c.m.reportRecordsDropped); d != 2 {
		t.Fatalf("dropped %v, want 2", d)
	}
}

// TestReportRecycledBuildersDeliverIntact reports from several goroutines
// through recycled builders, each record with a string map in the
// builder's own storage, while batches are encoded and their builders
// recycled. Every record must arrive exactly as it was built: a builder
// reused before its bag was encoded would show up as a changed or
// duplicated record (and as a data race under -race).
func TestReportRecycledBuildersDeliverIntact(t *testing.T) {
	srv := newTestServer(t)
	c, _ := newClient(t, srv, Config{Report: ReportConfig{MaxBatchEntries: 7, MaxBatchTime: config5ms}}, nil)
	const writers, each = 4, 150
	base := attributes.BagOf(map[string]attributes.Value{
		attributes.DestinationLabels: attributes.StringMapValue(attributes.StringMapOf(map[string]string{"app": "reviews", "version": "v2"})),
		attributes.ContextProtocol:   attributes.String("http"),
	})
	want := func(id string) attributes.Bag {
		bd := attributes.NewBuilderFrom(base, 3)
		bd.Set(attributes.RequestID, attributes.String(id))
		bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.StringMapOf(map[string]string{"x-request-id": id, ":path": "/" + id})))
		return bd.Build()
	}
	done := make(chan struct{})
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				id := strconv.Itoa(w) + "-" + strconv.Itoa(i)
				bd := c.ReportBuilder(base)
				bd.Set(attributes.RequestID, attributes.String(id))
				kvs := append(bd.KVs(2), attributes.KV{Key: "x-request-id", Value: id}, attributes.KV{Key: ":path", Value: "/" + id})
				bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.NewStringMap(kvs)))
				c.Report(bd)
			}
		}()
	}
	for range writers {
		<-done
	}
	got := receive(t, srv, writers*each)
	seen := map[string]bool{}
	for _, b := range got {
		v, _ := b.Get(attributes.RequestID)
		id := v.StringValue()
		if seen[id] {
			t.Fatalf("record %q arrived twice", id)
		}
		seen[id] = true
		if !b.Equal(want(id)) {
			t.Fatalf("record %q changed:\n%s\nwant\n%s", id, b, want(id))
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct records, want %d", len(seen), writers*each)
	}
}
