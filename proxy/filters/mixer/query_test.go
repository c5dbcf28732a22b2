package mixer

import (
	"net/url"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/attributes"
)

// parseQueryOracle is what appendQuery must match: url.ParseQuery, first
// value per name, as a sorted string map.
func parseQueryOracle(query string) (attributes.StringMap, bool) {
	values, err := url.ParseQuery(query)
	if err != nil {
		return attributes.StringMap{}, false
	}
	var kvs []attributes.KV
	for k, vs := range values {
		kvs = append(kvs, attributes.KV{Key: k, Value: vs[0]})
	}
	return attributes.NewStringMap(kvs), true
}

func checkAppendQuery(t *testing.T, query string) {
	t.Helper()
	want, wantOK := parseQueryOracle(query)
	kvs, ok := appendQuery(nil, query)
	got := attributes.NewStringMap(kvs)
	if ok != wantOK || (ok && !got.Equal(want)) {
		t.Fatalf("appendQuery(%q) = %v %v, want %v %v (url.ParseQuery)", query, got, ok, want, wantOK)
	}
}

func TestAppendQuery(t *testing.T) {
	for _, q := range []string{
		"", "page=2", "a=1&b=2", "a=1&a=2", "b=2&a=1&b=3", "a", "a=", "=v", "&&a=1&&", "a=1&", "&",
		"a=%41", "a=b+c", "a%3D=1", "a=%zz", "a;b=1", "a=1;b=2", "x=1&%=2",
		strings.Repeat("k=v&", 40), strings.Repeat("a=1&b=2&", 20) + "c=%20",
	} {
		t.Run(q, func(t *testing.T) { checkAppendQuery(t, q) })
	}
}

// FuzzAppendQuery checks appendQuery against url.ParseQuery.
func FuzzAppendQuery(f *testing.F) {
	for _, q := range []string{"page=2", "a=1&a=2&b", "=v&&", "a=%41+b", "a;b", strings.Repeat("k=v&", 33)} {
		f.Add(q)
	}
	f.Fuzz(checkAppendQuery)
}

func TestJoinRepeated(t *testing.T) {
	kvs := []attributes.KV{{Key: "x-b", Value: "1"}, {Key: "accept", Value: "a"}, {Key: "x-b", Value: "2"},
		{Key: "cookie", Value: "c"}, {Key: "x-b", Value: "3"}, {Key: "accept", Value: "b"}}
	got := joinRepeated(kvs)
	want := attributes.NewStringMap([]attributes.KV{{Key: "accept", Value: "a,b"}, {Key: "cookie", Value: "c"}, {Key: "x-b", Value: "1,2,3"}})
	if !got.Equal(want) {
		t.Fatalf("joinRepeated = %v, want %v", got, want)
	}
}
