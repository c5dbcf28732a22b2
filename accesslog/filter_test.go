package accesslog

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/proxy/filter"
)

func mustFilter(t testing.TB, src string) Filter {
	t.Helper()
	var c FilterConfig
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	f, err := NewFilter(&c)
	if err != nil {
		t.Fatalf("NewFilter: %v", err)
	}
	return f
}

func hdrs(kv ...string) *filter.HeaderMap {
	h := filter.NewHeaderMap()
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestFilters(t *testing.T) {
	grpcReq := hdrs("content-type", "application/grpc")
	type probe struct {
		info filter.StreamInfo
		want bool
	}
	for _, c := range []struct {
		name   string
		yaml   string
		probes []probe
	}{
		{"status GE", `status_code_filter: {comparison: {op: GE, value: 400}}`, []probe{
			{filter.StreamInfo{ResponseCode: 399}, false},
			{filter.StreamInfo{ResponseCode: 400}, true},
			{filter.StreamInfo{ResponseCode: 503}, true},
		}},
		{"status LE runtime shape", `status_code_filter: {comparison: {op: LE, value: {default_value: 299, runtime_key: k}}}`, []probe{
			{filter.StreamInfo{ResponseCode: 200}, true},
			{filter.StreamInfo{ResponseCode: 300}, false},
			{filter.StreamInfo{}, true},
		}},
		{"status EQ", `status_code_filter: {comparison: {op: EQ, value: 404}}`, []probe{
			{filter.StreamInfo{ResponseCode: 404}, true},
			{filter.StreamInfo{ResponseCode: 405}, false},
		}},
		{"status NE", `status_code_filter: {comparison: {op: NE, value: 200}}`, []probe{
			{filter.StreamInfo{ResponseCode: 200}, false},
			{filter.StreamInfo{ResponseCode: 0}, true},
		}},
		{"duration GE ms", `duration_filter: {comparison: {op: GE, value: 100}}`, []probe{
			{filter.StreamInfo{LastDownstreamTxByteSent: 99*time.Millisecond + 999*time.Microsecond}, false},
			{filter.StreamInfo{LastDownstreamTxByteSent: 100 * time.Millisecond}, true},
			{filter.StreamInfo{}, false},
		}},
		{"duration LE", `duration_filter: {comparison: {op: LE, value: 5}}`, []probe{
			{filter.StreamInfo{LastDownstreamTxByteSent: 5 * time.Millisecond}, true},
			{filter.StreamInfo{LastDownstreamTxByteSent: 6 * time.Millisecond}, false},
		}},
		{"not health check", `not_health_check_filter: {}`, []probe{
			{filter.StreamInfo{HealthCheck: true}, false},
			{filter.StreamInfo{}, true},
		}},
		{"any response flag", `response_flag_filter: {}`, []probe{
			{filter.StreamInfo{}, false},
			{filter.StreamInfo{ResponseFlags: filter.DelayInjected}, true},
		}},
		{"response flag set", `response_flag_filter: {flags: [UH, UF]}`, []probe{
			{filter.StreamInfo{ResponseFlags: filter.NoHealthyUpstream}, true},
			{filter.StreamInfo{ResponseFlags: filter.UpstreamConnectionFailure | filter.UpstreamRetryLimitExceeded}, true},
			{filter.StreamInfo{ResponseFlags: filter.UpstreamRetryLimitExceeded}, false},
			{filter.StreamInfo{}, false},
		}},
		{"header present", `header_filter: {header: {name: X-Debug}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs("x-debug", "")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs("x-other", "1")}, false},
			{filter.StreamInfo{}, false},
		}},
		{"header absent", `header_filter: {header: {name: x-debug, present_match: false}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs("x-debug", "1")}, false},
			{filter.StreamInfo{}, true},
		}},
		{"header exact", `header_filter: {header: {name: ":method", exact_match: POST}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs(":method", "POST")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs(":method", "post")}, false},
		}},
		{"header prefix", `header_filter: {header: {name: ":path", prefix_match: /api/}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/api/v1")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/static")}, false},
		}},
		{"header suffix", `header_filter: {header: {name: ":path", suffix_match: .png}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/a.png")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/a.png?x")}, false},
		}},
		{"header contains", `header_filter: {header: {name: user-agent, contains_match: bot}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs("user-agent", "googlebot/2")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs("user-agent", "curl")}, false},
		}},
		{"header regex full match", `header_filter: {header: {name: ":path", safe_regex_match: {regex: "/users/[0-9]+"}}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/users/42")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/users/42/x")}, false},
		}},
		{"header invert", `header_filter: {header: {name: ":path", prefix_match: /healthz, invert_match: true}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/healthz")}, false},
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/api")}, true},
			{filter.StreamInfo{}, true},
		}},
		{"header string_match ignore_case", `header_filter: {header: {name: user-agent, string_match: {contains: BOT, ignore_case: true}}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs("user-agent", "GoogleBot/2")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs("user-agent", "curl")}, false},
		}},
		{"header string_match prefix", `header_filter: {header: {name: ":path", string_match: {prefix: /API, ignore_case: true}}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/api/x")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs(":path", "/ap")}, false},
		}},
		{"header string_match suffix exact regex", `
or_filter:
  filters:
  - header_filter: {header: {name: a, string_match: {suffix: .PNG, ignore_case: true}}}
  - header_filter: {header: {name: b, string_match: {exact: X}}}
  - header_filter: {header: {name: c, string_match: {safe_regex: {regex: "[0-9]+"}}}}
`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs("a", "x.png")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs("b", "X")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs("b", "x")}, false},
			{filter.StreamInfo{RequestHeaders: hdrs("c", "123")}, true},
			{filter.StreamInfo{RequestHeaders: hdrs("c", "12a")}, false},
		}},
		{"status op omitted is EQ", `status_code_filter: {comparison: {value: 204}}`, []probe{
			{filter.StreamInfo{ResponseCode: 204}, true},
			{filter.StreamInfo{ResponseCode: 200}, false},
		}},
		{"grpc status", `grpc_status_filter: {statuses: [UNAVAILABLE, INTERNAL]}`, []probe{
			{filter.StreamInfo{RequestHeaders: grpcReq, ResponseTrailers: hdrs("grpc-status", "14")}, true},
			{filter.StreamInfo{RequestHeaders: grpcReq, ResponseTrailers: hdrs("grpc-status", "0")}, false},
			{filter.StreamInfo{RequestHeaders: grpcReq, ResponseCode: 503}, true},
			{filter.StreamInfo{RequestHeaders: grpcReq, ResponseCode: 400}, true},
		}},
		{"grpc status exclude", `grpc_status_filter: {statuses: [OK], exclude: true}`, []probe{
			{filter.StreamInfo{ResponseHeaders: hdrs("grpc-status", "0")}, false},
			{filter.StreamInfo{ResponseTrailers: hdrs("grpc-status", "5")}, true},
			{filter.StreamInfo{}, true}, // no status: UNKNOWN
		}},
		{"grpc unknown when absent", `grpc_status_filter: {statuses: [UNKNOWN]}`, []probe{
			{filter.StreamInfo{}, true},
			{filter.StreamInfo{ResponseTrailers: hdrs("grpc-status", "40")}, false},
		}},
		{"sampling 0%", `runtime_filter: {percent_sampled: {numerator: 0}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs("x-request-id", "a")}, false},
			{filter.StreamInfo{}, false},
		}},
		{"sampling 100%", `runtime_filter: {runtime_key: ignored, percent_sampled: {numerator: 1000000, denominator: MILLION}}`, []probe{
			{filter.StreamInfo{RequestHeaders: hdrs("x-request-id", "a")}, true},
			{filter.StreamInfo{}, true},
		}},
		{"and", `and_filter: {filters: [{status_code_filter: {comparison: {op: GE, value: 500}}}, {not_health_check_filter: {}}]}`, []probe{
			{filter.StreamInfo{ResponseCode: 503}, true},
			{filter.StreamInfo{ResponseCode: 503, HealthCheck: true}, false},
			{filter.StreamInfo{ResponseCode: 200}, false},
		}},
		{"or nested and", `
or_filter:
  filters:
  - response_flag_filter: {flags: [NR]}
  - and_filter:
      filters:
      - status_code_filter: {comparison: {op: GE, value: 500}}
      - duration_filter: {comparison: {op: GE, value: 1000}}
`, []probe{
			{filter.StreamInfo{ResponseFlags: filter.NoRouteFound, ResponseCode: 404}, true},
			{filter.StreamInfo{ResponseCode: 500, LastDownstreamTxByteSent: 2 * time.Second}, true},
			{filter.StreamInfo{ResponseCode: 500, LastDownstreamTxByteSent: time.Millisecond}, false},
			{filter.StreamInfo{ResponseCode: 200}, false},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := mustFilter(t, c.yaml)
			for i, p := range c.probes {
				if got := f.Match(&p.info); got != p.want {
					t.Errorf("probe %d: Match = %v, want %v", i, got, p.want)
				}
			}
		})
	}
}

// TestSamplingDeterministic checks that the decision is a function of the
// request id and that the sampled fraction is close to the percentage.
func TestSamplingDeterministic(t *testing.T) {
	f := mustFilter(t, `runtime_filter: {percent_sampled: {numerator: 2500, denominator: TEN_THOUSAND}}`)
	sampled := 0
	const n = 20000
	for i := range n {
		id := fmt.Sprintf("%08x-1f6a-4c1e-9d2b-%012x", i*7919, i)
		info := &filter.StreamInfo{RequestHeaders: hdrs("x-request-id", id)}
		first := f.Match(info)
		for range 3 {
			if f.Match(info) != first {
				t.Fatalf("id %s: decision changed", id)
			}
		}
		if first {
			sampled++
		}
	}
	if frac := float64(sampled) / n; frac < 0.23 || frac > 0.27 {
		t.Errorf("sampled fraction %.3f, want about 0.25", frac)
	}
	// Independent randomness ignores the id: over many tries the same id
	// must be both sampled and not sampled.
	ind := mustFilter(t, `runtime_filter: {percent_sampled: {numerator: 50}, use_independent_randomness: true}`)
	info := &filter.StreamInfo{RequestHeaders: hdrs("x-request-id", "same")}
	seen := map[bool]bool{}
	for i := 0; i < 1000 && len(seen) < 2; i++ {
		seen[ind.Match(info)] = true
	}
	if len(seen) != 2 {
		t.Error("use_independent_randomness gave the same decision 1000 times")
	}
}

func TestFilterValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml string
		want []string
	}{
		{"none", `{}`, []string{"filter: exactly one filter kind must be set, found 0"}},
		{"two", `{not_health_check_filter: {}, response_flag_filter: {}}`, []string{"found 2"}},
		{"bad op", `status_code_filter: {comparison: {op: GT, value: 1}}`, []string{`filter.status_code_filter.comparison.op: "GT" must be EQ, NE, GE or LE`}},
		{"missing value", `duration_filter: {comparison: {op: GE}}`, []string{"filter.duration_filter.comparison.value: required"}},
		{"bad flag", `response_flag_filter: {flags: [UH, XX]}`, []string{`filter.response_flag_filter.flags[1]: unknown response flag "XX"`}},
		{"bad denominator", `runtime_filter: {percent_sampled: {numerator: 1, denominator: THOUSAND}}`, []string{`filter.runtime_filter.percent_sampled.denominator: "THOUSAND"`}},
		{"numerator too big", `runtime_filter: {percent_sampled: {numerator: 101}}`, []string{"numerator: 101 is more than the denominator"}},
		{"header no name", `header_filter: {header: {exact_match: x}}`, []string{"filter.header_filter.header.name: required"}},
		{"header two kinds", `header_filter: {header: {name: a, exact_match: x, prefix_match: y}}`, []string{"at most one of"}},
		{"bad regex", `header_filter: {header: {name: a, safe_regex_match: {regex: "("}}}`, []string{"filter.header_filter.header.safe_regex_match.regex: error parsing regexp"}},
		{"string_match empty", `header_filter: {header: {name: a, string_match: {ignore_case: true}}}`, []string{"filter.header_filter.header.string_match: exactly one of"}},
		{"string_match bad regex", `header_filter: {header: {name: a, string_match: {safe_regex: {regex: "[" }}}}`, []string{"filter.header_filter.header.string_match.safe_regex.regex: error parsing regexp"}},
		{"grpc empty", `grpc_status_filter: {}`, []string{"filter.grpc_status_filter.statuses: must list at least one status"}},
		{"grpc bad", `grpc_status_filter: {statuses: [OK, NOPE]}`, []string{`filter.grpc_status_filter.statuses[1]: unknown gRPC status "NOPE"`}},
		{"and one", `and_filter: {filters: [{not_health_check_filter: {}}]}`, []string{"filter.and_filter.filters: needs at least two filters"}},
		{"nested errors all reported", `or_filter: {filters: [{status_code_filter: {comparison: {op: X, value: 1}}}, {response_flag_filter: {flags: [ZZ]}}]}`, []string{
			`filter.or_filter.filters[0].status_code_filter.comparison.op: "X"`,
			`filter.or_filter.filters[1].response_flag_filter.flags[0]: unknown response flag "ZZ"`,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var fc FilterConfig
			if err := yaml.Unmarshal([]byte(c.yaml), &fc); err != nil {
				t.Fatal(err)
			}
			err := fc.Validate("filter")
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := NewFilter(&fc); err == nil {
				t.Error("NewFilter accepted an invalid config")
			}
		})
	}
	if f, err := NewFilter(nil); f != nil || err != nil {
		t.Errorf("NewFilter(nil) = %v, %v", f, err)
	}
}

func BenchmarkFilter(b *testing.B) {
	f := mustFilter(b, `
and_filter:
  filters:
  - not_health_check_filter: {}
  - or_filter:
      filters:
      - status_code_filter: {comparison: {op: GE, value: 500}}
      - runtime_filter: {percent_sampled: {numerator: 10}}
`)
	info := &filter.StreamInfo{ResponseCode: 200, RequestHeaders: hdrs(":path", "/", "x-request-id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2")}
	b.ReportAllocs()
	for b.Loop() {
		f.Match(info)
	}
}
