package accesslog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/proxy/filter"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// counter reads one sink's counter.
func counter(t *testing.T, m *Metrics, vec *prometheus.CounterVec, sink string) int {
	t.Helper()
	return int(testutil.ToFloat64(vec.WithLabelValues(sink)))
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// idStream is a stream whose x-request-id is id.
func idStream(id string) *filter.StreamInfo {
	return &filter.StreamInfo{Protocol: filter.ProtocolHTTP11, ResponseCode: 200, RequestHeaders: filter.NewHeaderMap(filter.HeaderField{Name: "x-request-id", Value: id})}
}

func newFileHandler(t *testing.T, fc FileConfig, opts Options) (*Handler, *Metrics) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Metrics = m
	h, err := New(Config{Name: "test", Type: TypeFile, File: &fc}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h, m
}

func TestFileSinkWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	h, m := newFileHandler(t, FileConfig{Path: path, Format: "%REQ(X-REQUEST-ID)% %RESPONSE_CODE%\n"}, Options{})
	for i := range 100 {
		h.Log(idStream(fmt.Sprint(i)))
	}
	if err := h.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 100 || lines[0] != "0 200" || lines[99] != "99 200" {
		t.Errorf("got %d lines, first %q", len(lines), lines)
	}
	if got := counter(t, m, m.logsWritten, "test"); got != 100 {
		t.Errorf("logs_written = %d", got)
	}
	if got := counter(t, m, m.writeBuffered, "test"); got != 100 {
		t.Errorf("write_buffered = %d", got)
	}
	if got := counter(t, m, m.logsDropped, "test"); got != 0 {
		t.Errorf("logs_dropped = %d", got)
	}
	if err := h.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	h.Log(idStream("late"))
	if got := counter(t, m, m.logsDropped, "test"); got != 1 {
		t.Errorf("logs_dropped after close = %d", got)
	}
	if err := h.Flush(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close = %v", err)
	}
	if err := h.Close(testCtx(t)); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestFileSinkFilterAndJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.json")
	fc := FileConfig{Path: path, TypedJSONFormat: map[string]any{"id": "%REQ(X-REQUEST-ID)%", "code": "%RESPONSE_CODE%"}}
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	h, err := New(Config{Type: TypeFile, File: &fc, Filter: &FilterConfig{StatusCode: &ComparisonFilter{Comparison{Op: "GE", Value: ComparisonValue{Value: 500, set: true}}}}}, Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	if h.Name() != "file:"+path {
		t.Errorf("default name %q", h.Name())
	}
	ok := idStream("kept")
	ok.ResponseCode = 503
	h.Log(idStream("skipped"))
	h.Log(ok)
	if err := h.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if lines := readLines(t, path); len(lines) != 1 || lines[0] != `{"code":503,"id":"kept"}` {
		t.Errorf("lines %q", lines)
	}
}

// TestFileSinkTimerFlush waits for the flush interval to write a line.
func TestFileSinkTimerFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	flushed := make(chan bool, 10)
	h, m := newFileHandler(t, FileConfig{Path: path, Format: "%REQ(X-REQUEST-ID)%\n", FlushInterval: config.Duration(5 * time.Millisecond)},
		Options{onFlush: func(byTimer bool) { flushed <- byTimer }})
	h.Log(idStream("tick"))
	select {
	case byTimer := <-flushed:
		if !byTimer {
			t.Error("flush was not by timer")
		}
	case <-testCtx(t).Done():
		t.Fatal("no timer flush")
	}
	if lines := readLines(t, path); len(lines) != 1 || lines[0] != "tick" {
		t.Errorf("lines %q", lines)
	}
	if got := counter(t, m, m.flushedByTimer, "test"); got != 1 {
		t.Errorf("flushed_by_timer = %d", got)
	}
}

func TestFileSinkSizeFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	flushed := make(chan bool, 10)
	h, m := newFileHandler(t, FileConfig{Path: path, Format: "%REQ(X-REQUEST-ID)%\n", FlushInterval: config.Duration(time.Hour), FlushBytes: 10},
		Options{onFlush: func(byTimer bool) { flushed <- byTimer }})
	h.Log(idStream("0123456789")) // 11 bytes with the newline
	select {
	case byTimer := <-flushed:
		if byTimer {
			t.Error("flush was by timer")
		}
	case <-testCtx(t).Done():
		t.Fatal("no size flush")
	}
	if got := counter(t, m, m.flushedBySize, "test"); got != 1 {
		t.Errorf("flushed_by_size = %d", got)
	}
	if lines := readLines(t, path); len(lines) != 1 {
		t.Errorf("lines %q", lines)
	}
}

// TestFileSinkOverflow fills the bounded buffer: Log never blocks, the
// lines beyond it are dropped and counted, the others are written.
func TestFileSinkOverflow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	// Each line is 4 bytes ("NNN\n"); the buffer holds 10 of them and only
	// an explicit Flush writes (timer an hour, flush size above the buffer).
	h, m := newFileHandler(t, FileConfig{Path: path, Format: "%REQ(X-REQUEST-ID)%\n",
		FlushInterval: config.Duration(time.Hour), BufferBytes: 40, FlushBytes: 1000}, Options{})
	for i := range 25 {
		h.Log(idStream(fmt.Sprintf("%03d", i)))
	}
	if got := counter(t, m, m.logsDropped, "test"); got != 15 {
		t.Errorf("logs_dropped = %d, want 15", got)
	}
	if got := testutil.ToFloat64(m.bufferedBytes.WithLabelValues("test")); got != 40 {
		t.Errorf("buffered_bytes = %v, want 40", got)
	}
	if err := h.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 10 || lines[0] != "000" || lines[9] != "009" {
		t.Errorf("lines %q", lines)
	}
	// The buffer is free again.
	h.Log(idStream("025"))
	h.Flush(testCtx(t))
	if got := counter(t, m, m.logsWritten, "test"); got != 11 {
		t.Errorf("logs_written = %d, want 11", got)
	}
}

// TestFileSinkReopen rotates the file under concurrent logging: every line
// is in exactly one of the two files, the ones logged before Reopen
// returned are in the old one.
func TestFileSinkReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	h, m := newFileHandler(t, FileConfig{Path: path, Format: "%REQ(X-REQUEST-ID)%\n", FlushBytes: 512}, Options{})
	for i := range 100 {
		h.Log(idStream(fmt.Sprintf("before-%d", i)))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range 250 {
				h.Log(idStream(fmt.Sprintf("during-%d-%d", w, i)))
			}
		}()
	}
	close(start)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := h.Reopen(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range 100 {
		h.Log(idStream(fmt.Sprintf("after-%d", i)))
	}
	if err := h.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	old, cur := readLines(t, path+".1"), readLines(t, path)
	seen := map[string]int{}
	for _, l := range append(append([]string{}, old...), cur...) {
		seen[l]++
	}
	want := 100 + 4*250 + 100
	if len(seen) != want || len(old)+len(cur) != want {
		t.Errorf("%d distinct lines, %d in total, want %d", len(seen), len(old)+len(cur), want)
	}
	for l, n := range seen {
		if n != 1 {
			t.Errorf("line %q written %d times", l, n)
		}
	}
	for i, l := range old[:100] {
		if l != fmt.Sprintf("before-%d", i) {
			t.Fatalf("old file line %d = %q", i, l)
		}
	}
	for _, l := range old {
		if strings.HasPrefix(l, "after-") {
			t.Errorf("line %q logged after Reopen is in the old file", l)
		}
	}
	if len(cur) < 100 || cur[len(cur)-1] != "after-99" {
		t.Errorf("new file has %d lines, last %q", len(cur), cur[len(cur)-1:])
	}
	if got := counter(t, m, m.logsDropped, "test"); got != 0 {
		t.Errorf("logs_dropped = %d", got)
	}
	if got := counter(t, m, m.logsWritten, "test"); got != want {
		t.Errorf("logs_written = %d, want %d", got, want)
	}
}

// TestFileSinkWriteFailure writes to /dev/full, which fails every write
// with ENOSPC.
func TestFileSinkWriteFailure(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	h, m := newFileHandler(t, FileConfig{Path: "/dev/full", Format: "%REQ(X-REQUEST-ID)%\n"}, Options{})
	for i := range 3 {
		h.Log(idStream(fmt.Sprint(i)))
	}
	if err := h.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	h.Log(idStream("again"))
	h.Flush(testCtx(t))
	if got := counter(t, m, m.writeFailed, "test"); got != 2 {
		t.Errorf("write_failed = %d, want 2", got)
	}
	if got := counter(t, m, m.logsDropped, "test"); got != 4 {
		t.Errorf("logs_dropped = %d, want 4", got)
	}
	if got := counter(t, m, m.logsWritten, "test"); got != 0 {
		t.Errorf("logs_written = %d", got)
	}
}

// TestFileSinkFailureLogRateLimited checks that repeated write failures
// are logged once per interval, with the sink's fields.
func TestFileSinkFailureLogRateLimited(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	core, logs := observer.New(zap.DebugLevel)
	h, m := newFileHandler(t, FileConfig{Path: "/dev/full", Format: "x\n"}, Options{Logger: zap.New(core)})
	for range 5 {
		h.Log(idStream("1"))
		if err := h.Flush(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	if got := counter(t, m, m.writeFailed, "test"); got != 5 {
		t.Errorf("write_failed = %d, want 5", got)
	}
	warns := logs.FilterMessage("access log write failed").All()
	if len(warns) != 1 {
		t.Fatalf("%d warnings logged, want 1 (rate-limited)", len(warns))
	}
	if f := warns[0].ContextMap(); f["sink"] != "test" || f["path"] != "/dev/full" || warns[0].LoggerName != "accesslog" {
		t.Errorf("warning fields %v, logger %q", f, warns[0].LoggerName)
	}
}

func TestLogLimiter(t *testing.T) {
	l := logLimiter{every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Errorf("first = %v, %d", ok, n)
	}
	for i := 1; i <= 3; i++ {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Errorf("allowed within the interval")
		}
	}
	if ok, n := l.allow(t0.Add(10 * time.Second)); !ok || n != 3 {
		t.Errorf("after the interval = %v, %d suppressed; want true, 3", ok, n)
	}
}

// TestFileSinkReopenFailure removes the directory: Reopen fails and is
// counted, and the sink keeps writing to the file it had open.
func TestFileSinkReopenFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "access.log")
	h, m := newFileHandler(t, FileConfig{Path: path, Format: "x\n"}, Options{})
	f, err := os.Open(path) // keeps the inode readable after the unlink
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := h.Reopen(); err == nil || !strings.Contains(err.Error(), "accesslog: reopen") {
		t.Errorf("Reopen = %v", err)
	}
	if got := counter(t, m, m.reopenFailed, "test"); got != 1 {
		t.Errorf("reopen_failed = %d", got)
	}
	h.Log(idStream("1"))
	if err := h.Flush(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, m, m.logsWritten, "test"); got != 1 {
		t.Errorf("logs_written = %d, want 1 (to the old file)", got)
	}
	b := make([]byte, 10)
	if n, _ := f.Read(b); string(b[:n]) != "x\n" {
		t.Errorf("old file holds %q", b[:n])
	}
}

func TestFileSinkOpenError(t *testing.T) {
	fc := FileConfig{Path: filepath.Join(t.TempDir(), "missing", "access.log")}
	_, err := New(Config{Name: "n", Type: TypeFile, File: &fc}, Options{})
	if err == nil || !strings.Contains(err.Error(), "accesslog: n: open access log") {
		t.Errorf("New = %v", err)
	}
}

func TestFileSinkStdout(t *testing.T) {
	fc := FileConfig{Path: "/dev/stdout"}
	h, err := New(Config{Type: TypeFile, File: &fc}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Reopen(); err != nil {
		t.Error(err)
	}
	if err := h.Close(testCtx(t)); err != nil {
		t.Error(err)
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
	m.forSink("a").logsWritten.Add(3)
	m.forSink("a").logsDropped.Inc()
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP remora_access_log_logs_dropped_total Entries dropped: buffer full, write failure or handler closed.
# TYPE remora_access_log_logs_dropped_total counter
remora_access_log_logs_dropped_total{sink="a"} 1
# HELP remora_access_log_logs_written_total Entries written to the file or sent to the access-log service.
# TYPE remora_access_log_logs_written_total counter
remora_access_log_logs_written_total{sink="a"} 3
`), "remora_access_log_logs_written_total", "remora_access_log_logs_dropped_total")
	if err != nil {
		t.Error(err)
	}
}

func BenchmarkFileSinkLog(b *testing.B) {
	path := filepath.Join(b.TempDir(), "access.log")
	fc := FileConfig{Path: path}
	h, err := New(Config{Type: TypeFile, File: &fc}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	info := fullStream()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Log(info)
		}
	})
}
