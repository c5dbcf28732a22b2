package filter

import (
	"reflect"
	"testing"
)

func TestHeaderMapOperations(t *testing.T) {
	tests := []struct {
		name string
		op   func(h *HeaderMap)
		want []HeaderField
	}{
		{"set new", func(h *HeaderMap) { h.Set("x-a", "1") }, []HeaderField{{"x-a", "1"}}},
		{"set replaces all", func(h *HeaderMap) { h.Add("x-a", "1"); h.Add("x-b", "2"); h.Add("x-a", "3"); h.Set("x-a", "4") },
			[]HeaderField{{"x-a", "4"}, {"x-b", "2"}}},
		{"add keeps", func(h *HeaderMap) { h.Add("x-a", "1"); h.Add("x-a", "2") }, []HeaderField{{"x-a", "1"}, {"x-a", "2"}}},
		{"append joins", func(h *HeaderMap) { h.Add("x-a", "1"); h.Append("x-a", "2") }, []HeaderField{{"x-a", "1,2"}}},
		{"append sets", func(h *HeaderMap) { h.Append("x-a", "2") }, []HeaderField{{"x-a", "2"}}},
		{"del all", func(h *HeaderMap) { h.Add("x-a", "1"); h.Add("x-b", "2"); h.Add("x-a", "3"); h.Del("x-a") }, []HeaderField{{"x-b", "2"}}},
		{"del absent", func(h *HeaderMap) { h.Add("x-b", "2"); h.Del("x-a") }, []HeaderField{{"x-b", "2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h HeaderMap
			tt.op(&h)
			if got := h.Fields(); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("fields = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHeaderMapGetters(t *testing.T) {
	h := NewHeaderMap(HeaderField{HeaderMethod, "GET"}, HeaderField{HeaderPath, "/a"}, HeaderField{"x", "1"}, HeaderField{"x", "2"})
	if h.Method() != "GET" || h.Path() != "/a" || h.Authority() != "" {
		t.Fatalf("pseudo-headers: %q %q %q", h.Method(), h.Path(), h.Authority())
	}
	if got := h.Values(nil, "x"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Fatalf("Values = %v", got)
	}
	var nilMap *HeaderMap
	if _, ok := nilMap.Get("x"); ok || nilMap.Len() != 0 {
		t.Fatal("nil map must be empty")
	}
	c := h.Clone()
	c.Set("x", "9")
	if h.Value("x") != "1" {
		t.Fatal("Clone shares storage")
	}
}

func TestLowerName(t *testing.T) {
	for in, want := range map[string]string{"content-type": "content-type", "Content-Type": "content-type", "": ""} {
		if got := LowerName(in); got != want {
			t.Errorf("LowerName(%q) = %q, want %q", in, got, want)
		}
	}
	var sink string
	if n := testing.AllocsPerRun(100, func() { sink = LowerName("x-request-id") }); n != 0 || sink != "x-request-id" {
		t.Errorf("LowerName of a lower-case name allocated %v times", n)
	}
}

func TestResponseFlagsString(t *testing.T) {
	tests := []struct {
		f    ResponseFlags
		want string
	}{
		{0, "-"},
		{NoRouteFound, "NR"},
		{UpstreamOverflow, "UO"},
		{UnauthorizedExternalService, "UAEX"},
		{UpstreamConnectionFailure | UpstreamRetryLimitExceeded, "UF,URX"},
		{NoHealthyUpstream | FailedLocalHealthCheck, "LH,UH"},
		{DropOverload, "DO"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%#x.String() = %q, want %q", uint32(tt.f), got, tt.want)
		}
	}
	if len(flagNames) != 28 || ResponseFlags(1)<<len(flagNames) != lastResponseFlag {
		t.Fatalf("flag names (%d) and constants disagree", len(flagNames))
	}
	for _, n := range ResponseFlagNames() {
		f, err := ParseResponseFlag(n)
		if err != nil || f.String() != n {
			t.Errorf("ParseResponseFlag(%q) = %v, %v", n, f, err)
		}
	}
	if _, err := ParseResponseFlag("XX"); err == nil {
		t.Error("ParseResponseFlag accepted XX")
	}
}

func TestStreamInfoDynamicMetadata(t *testing.T) {
	var s StreamInfo
	s.SetDynamicMetadata("ns", "k", "v")
	if v, ok := s.DynamicMetadata("ns", "k"); !ok || v != "v" {
		t.Fatalf("got %v %v", v, ok)
	}
	s.Reset()
	if _, ok := s.DynamicMetadata("ns", "k"); ok {
		t.Fatal("Reset kept metadata")
	}
	s.SetFilterState("a", 1)
	s.SetFilterState("b", 2)
	s.SetFilterState("a", 3)
	if s.FilterState("a") != 3 || s.FilterState("b") != 2 || s.FilterState("c") != nil {
		t.Fatalf("filter state: %v %v %v", s.FilterState("a"), s.FilterState("b"), s.FilterState("c"))
	}
	s.Reset()
	if s.FilterState("a") != nil {
		t.Fatal("Reset kept filter state")
	}
}
