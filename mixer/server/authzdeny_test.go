package server

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/policy"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
)

// TestDeniedAnswerBytes: a denial written from its rendering and the
// answer's ID decodes to exactly the CheckResponse authzResponse builds
// for that answer, and its message is denyMessage's.
func TestDeniedAnswerBytes(t *testing.T) {
	tests := []struct {
		name string
		d    policy.Decision
	}{
		{"plain", policy.Decision{ID: "0123456789abcdef"}},
		{"no id", policy.Decision{}},
		{"status body headers", policy.Decision{ID: "x", HTTPStatus: 401, Body: "login please",
			Headers: []policy.HeaderValue{{Key: "www-authenticate", Value: "Bearer"}, {Key: "x-a", Value: "1"}}}},
		{"dynamic metadata", policy.Decision{ID: "y", DynamicMetadata: map[string]any{"k": "v", "n": json.Number("3"), "o": map[string]any{"l": []any{"a", json.Number("1.5")}}}}},
		{"long message", policy.Decision{ID: "z", Body: string(make([]byte, 300))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.d
			want, err := authzResponse(&d)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := string(appendDenyMessage(nil, &d)), denyMessage(&d); got != want || len(got) != denyMessageLen(&d) {
				t.Fatalf("message %q (len %d), want %q", got, denyMessageLen(&d), want)
			}
			r, err := newDeniedRendering(want)
			if err != nil {
				t.Fatal(err)
			}
			out := (&deniedAnswer{r: r, d: &d}).marshal()
			data := out.Materialize()
			out.Free()
			got := new(authv3.CheckResponse)
			if err := proto.Unmarshal(data, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
			if len(d.DynamicMetadata) == 0 { // no map: proto.Marshal's bytes are deterministic
				wantData, err := proto.Marshal(want)
				if err != nil {
					t.Fatal(err)
				}
				if string(data) != string(wantData) {
					t.Fatalf("bytes differ:\n got %x\nwant %x", data, wantData)
				}
			}
		})
	}
}
