package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/policy"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// bytesCodec sends a []byte request as it is and discards the response, so
// that a test can put arbitrary bytes on the wire.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (bytesCodec) Unmarshal(mem.BufferSlice, any) error { return nil }
func (bytesCodec) Name() string                         { return "proto" }

// TestReportWireEdge: the Report handler decodes the wire bytes itself.
// Malformed protobuf is INVALID_ARGUMENT naming the problem; a batch with
// one bad record counts nothing; a good batch counts every record.
func TestReportWireEdge(t *testing.T) {
	ts := start(t, Config{Policy: policy.DefaultConfig()}, Options{}, nil)
	good := func(n int) []attributes.Bag {
		bags := make([]attributes.Bag, n)
		for i := range bags {
			bags[i] = attributes.BagOf(map[string]attributes.Value{
				attributes.ContextProtocol:         attributes.String("http"),
				attributes.ContextReporterKind:     attributes.String("inbound"),
				attributes.DestinationWorkloadName: attributes.String("reviews-v1"),
				attributes.ResponseCode:            attributes.Int64(200),
				attributes.RequestPath:             attributes.String(fmt.Sprintf("/r/%d", i)),
				attributes.ResponseDuration:        attributes.Duration(time.Millisecond),
			})
		}
		return bags
	}
	gwc := attributes.GlobalWordCount()
	valid, err := proto.Marshal(attributes.EncodeReport(good(3), mixerv1.ReportRequest_DELTA_ENCODING, gwc))
	if err != nil {
		t.Fatal(err)
	}
	badLast := attributes.EncodeReport(good(3), mixerv1.ReportRequest_INDEPENDENT_ENCODING, gwc)
	badLast.Attributes[2].Bools = map[int32]bool{5000: true}
	badLastData, err := proto.Marshal(badLast)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want string // "" for success
	}{
		{"valid batch", valid, ""},
		{"truncated", append(append([]byte(nil), valid...), 0x0a, 0x10, 0x12), "malformed protobuf"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "malformed protobuf"},
		{"bad last record", badLastData, "record 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out []byte
			err := ts.conn.Invoke(ctxT(t), mixerv1.Mixer_Report_FullMethodName, &tt.data, &out, grpc.ForceCodecV2(bytesCodec{}))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want INVALID_ARGUMENT containing %q", err, tt.want)
			}
		})
	}
	want := `
# HELP remora_mixer_report_records_total Report records ingested into telemetry.
# TYPE remora_mixer_report_records_total counter
remora_mixer_report_records_total 3
`
	if err := testutil.ScrapeAndCompare(ts.monURL+"/metrics", strings.NewReader(want), "remora_mixer_report_records_total"); err != nil {
		t.Error(err)
	}
	// Check still takes the generated types through the same server codec.
	resp, err := ts.mixer.Check(ctxT(t), checkRequest("GET", "/", headers("accept", "*/*")))
	if err != nil || resp.GetPrecondition().GetStatus() == nil {
		t.Fatalf("check: %v, %v", resp, err)
	}
}
