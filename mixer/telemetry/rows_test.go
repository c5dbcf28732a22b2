package telemetry

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// rowsConfig adds custom metrics reading header maps, alternatives and
// every value kind to the standard ones.
func rowsConfig() Config {
	return Config{Metrics: []MetricConfig{
		{Name: "requests_by_ua_total", Kind: "counter", Labels: []LabelConfig{
			{Name: "method", Attribute: "request.method"},
			{Name: "ua", Attribute: "request.headers[user-agent] | request.useragent", Default: "none"},
			{Name: "ip", Attribute: "destination.ip"},
			{Name: "at", Attribute: "request.time"},
			{Name: "custom", Attribute: "custom.local | custom.bytes"},
		}},
		{Name: "header_value", Kind: "gauge", Value: "request.headers[x-value] | custom.double"},
	}}
}

// ingestBoth feeds the Report request in data to two Telemetry instances:
// one through ReportDecoder and Record (the oracle), one through a
// ProjectionDecoder and RecordRows. It fails the test unless both reject
// the request with the same error or export the same metrics.
func ingestBoth(t testing.TB, oracle, fast *Telemetry, d *attributes.ProjectionDecoder, data []byte) error {
	t.Helper()
	var full attributes.ReportDecoder
	bags, wantErr := full.DecodeAll(data)
	rows, n, err := d.Decode(data, fast.Projection())
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("ProjectionDecoder err = %v, ReportDecoder err = %v", err, wantErr)
	}
	if err != nil {
		return err
	}
	for _, b := range bags {
		oracle.Record(b) // one by one: no batch series cache
	}
	fast.RecordRows(rows, n)
	d.Reset()
	if got, want := gather(t, fast), gather(t, oracle); !bytes.Equal(got, want) {
		t.Fatalf("RecordRows exported\n%s\nRecordBatch exported\n%s", got, want)
	}
	return nil
}

// gather renders every series of tel (label values, value, histogram sum
// and counts) in a stable order, without a registry: cheap enough for a
// fuzz target.
func gather(t testing.TB, tel *Telemetry) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, m := range tel.metrics {
		var lines []string
		m.series.Range(func(_, v any) bool {
			for s := v.(*series); s != nil; s = s.next {
				line := fmt.Sprintf("%s %q %v %v", m.name, s.values, math.Float64frombits(s.value.Load()), math.Float64frombits(s.sum.Load()))
				for i := range s.counts {
					line += fmt.Sprint(" ", s.counts[i].Load())
				}
				lines = append(lines, line)
			}
			return true
		})
		slices.Sort(lines)
		fmt.Fprintf(&b, "%s overflow %d\n", m.name, m.overflow.Load())
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

func rowsRecords() []attributes.Bag {
	var bags []attributes.Bag
	for i := range 12 {
		bd := attributes.NewBuilderFrom(httpRecord(int64(200+100*(i%4)), time.Duration(i)*time.Millisecond), 6)
		bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.StringMapOf(map[string]string{
			"user-agent": fmt.Sprint("agent-", i%3), "x-value": fmt.Sprint(i), "x-request-id": fmt.Sprint(i)})))
		bd.Set(attributes.RequestTime, attributes.Timestamp(time.Unix(1_700_000_000, int64(i))))
		bd.Set("custom.local", attributes.String(fmt.Sprint("c", i%2)))
		bd.Set("custom.double", attributes.Double(float64(i)/4))
		if i%5 == 4 {
			bd.Set(attributes.ContextProtocol, attributes.String(attributes.ProtocolTCP))
			bd.Set(attributes.ConnectionEvent, attributes.String("close"))
			bd.Set(attributes.ConnectionSentBytes, attributes.Int64(int64(i)))
		}
		bags = append(bags, bd.Build())
	}
	return bags
}

func TestRecordRowsMatchesRecord(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	bags := rowsRecords()
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{mixerv1.ReportRequest_DELTA_ENCODING, mixerv1.ReportRequest_INDEPENDENT_ENCODING} {
		t.Run(sem.String(), func(t *testing.T) {
			oracle, fast := newTelemetry(t, rowsConfig(), c.Now), newTelemetry(t, rowsConfig(), c.Now)
			data, err := proto.Marshal(attributes.EncodeReport(bags, sem, attributes.GlobalWordCount()))
			if err != nil {
				t.Fatal(err)
			}
			var d attributes.ProjectionDecoder
			for range 2 {
				if err := ingestBoth(t, oracle, fast, &d, data); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// FuzzRecordRows: for any bytes, the fast ingestion path exports the
// metrics the oracle path exports, or fails with its error.
func FuzzRecordRows(f *testing.F) {
	bags := rowsRecords()
	for _, sem := range []mixerv1.ReportRequest_RepeatedAttributesSemantics{0, 1} {
		data, _ := proto.Marshal(attributes.EncodeReport(bags[:4], sem, attributes.GlobalWordCount()))
		f.Add(data)
	}
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	var d attributes.ProjectionDecoder
	// One pair of Telemetry for every input: both see the same inputs, so
	// they must stay equal; a small series limit bounds their size.
	cfg := rowsConfig()
	cfg.MaxSeriesPerMetric = 50
	oracle, fast := newTelemetry(f, cfg, c.Now), newTelemetry(f, cfg, c.Now)
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ingestBoth(t, oracle, fast, &d, data)
	})
}

// TestRecordBatchSeriesCache: within a batch, records repeating a label
// combination reuse its series; across batches, a series that expired in
// between is created anew rather than observed into.
func TestRecordBatchSeriesCache(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	cfg := Config{SeriesExpiry: 0}
	tel := newTelemetry(t, cfg, c.Now)
	a, b := httpRecord(200, time.Millisecond), httpRecord(404, time.Millisecond)
	tel.RecordBatch([]attributes.Bag{a, b, a, a, b})
	c.Advance(DefaultSeriesExpiry + time.Minute)
	tel.Expire()
	tel.RecordBatch([]attributes.Bag{a})
	got := string(gather(t, tel))
	for _, want := range []string{`istio_requests_total ["destination" "productpage-v1" "default" "spiffe://cluster.local/ns/default/sa/productpage" "productpage" "v1" "reviews-v2" "default" "spiffe://cluster.local/ns/default/sa/reviews" "reviews" "v2" "reviews.default.svc.cluster.local" "reviews" "default" "http" "200" "" "-" "mutual_tls"] 1 0`} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %s in\n%s", want, got)
		}
	}
	if strings.Contains(got, `"404"`) {
		t.Fatalf("the expired 404 series is still there:\n%s", got)
	}
}
