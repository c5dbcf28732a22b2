package headermutation

import (
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
	"gopkg.in/yaml.v3"
)

func node(t testing.TB, s string) *yaml.Node {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(s), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"ok", `{request_headers_to_add: [{name: x-a, value: "1", append: true}], response_headers_to_remove: [server]}`, ""},
		{"unknown field", `{request_headers_to_add: [{name: x-a, valeu: "1"}]}`, "request_headers_to_add[0].valeu: line 1: unknown field"},
		{"upper case", `{response_headers_to_add: [{name: X-A, value: "1"}]}`, `response_headers_to_add[0]: invalid header name "X-A"`},
		{"pseudo", `{request_headers_to_remove: [":path"]}`, `request_headers_to_remove[0]: invalid header name ":path"`},
		{"not a mapping", `[1]`, "expected a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := factory{}.ParseConfig(node(t, tt.in), filter.Env{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if c, err := (factory{}).ParseConfig(nil, filter.Env{}); err != nil || c == nil {
		t.Fatalf("no config: %v %v", c, err)
	}
}

func TestApply(t *testing.T) {
	c, err := parse(node(t, `{request_headers_to_add: [{name: x-a, value: new}, {name: x-b, value: two, append: true}], request_headers_to_remove: [x-gone]}`))
	if err != nil {
		t.Fatal(err)
	}
	h := filter.NewHeaderMap(filter.HeaderField{Name: "x-a", Value: "old"}, filter.HeaderField{Name: "x-b", Value: "one"}, filter.HeaderField{Name: "x-gone", Value: "1"})
	apply(h, c.RequestHeadersToRemove, c.RequestHeadersToAdd)
	if h.Value("x-a") != "new" || len(h.Values(nil, "x-b")) != 2 || h.Has("x-gone") {
		t.Fatalf("got %v", h.Fields())
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`{request_headers_to_add: [{name: x-a, value: "1"}]}`)
	f.Add(`{response_headers_to_remove: [a, b]}`)
	f.Add(`[`)
	f.Fuzz(func(t *testing.T, s string) {
		var n yaml.Node
		if yaml.Unmarshal([]byte(s), &n) != nil {
			return
		}
		c, err := parse(&n)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
	})
}
