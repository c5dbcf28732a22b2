package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// fullInfo is a stream with every field the operators read set.
func fullInfo() *filter.StreamInfo {
	info := &filter.StreamInfo{
		StartTime:                      time.Date(2024, 1, 2, 3, 4, 5, 678901234, time.UTC),
		Protocol:                       filter.ProtocolHTTP2,
		LastDownstreamRxByteReceived:   2 * time.Millisecond,
		FirstUpstreamTxByteSent:        3 * time.Millisecond,
		LastUpstreamTxByteSent:         4 * time.Millisecond,
		FirstUpstreamRxByteReceived:    15*time.Millisecond + 700*time.Microsecond,
		LastUpstreamRxByteReceived:     20 * time.Millisecond,
		FirstDownstreamTxByteSent:      16 * time.Millisecond,
		LastDownstreamTxByteSent:       21*time.Millisecond + 999*time.Microsecond,
		BytesReceived:                  154,
		BytesSent:                      1024,
		ResponseCode:                   503,
		ResponseCodeDetails:            "upstream_reset_before_response_started{connection_failure}",
		ResponseFlags:                  filter.UpstreamConnectionFailure | filter.UpstreamRetryLimitExceeded,
		RouteName:                      "default-route",
		UpstreamCluster:                "backend",
		UpstreamHost:                   "10.0.0.7:8080",
		UpstreamLocalAddress:           "10.0.0.2:45678",
		UpstreamTransportFailureReason: "connection refused",
		DownstreamRemoteAddress:        netip.MustParseAddrPort("192.0.2.10:51234"),
		DownstreamLocalAddress:         netip.MustParseAddrPort("[2001:db8::1]:15006"),
		DownstreamDirectRemoteAddress:  netip.MustParseAddrPort("192.0.2.1:40000"),
		RequestedServerName:            "api.example.com",
		DownstreamTLS:                  true,
		DownstreamPeerURISAN:           "spiffe://cluster.local/ns/default/sa/client",
		RequestHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":method", Value: "POST"},
			filter.HeaderField{Name: ":path", Value: "/api/v1/locations?x=1"},
			filter.HeaderField{Name: ":authority", Value: "api.example.com"},
			filter.HeaderField{Name: ":scheme", Value: "https"},
			filter.HeaderField{Name: "x-envoy-original-path", Value: "/original"},
			filter.HeaderField{Name: "user-agent", Value: `curl/8.5 "quoted" \ tab	end`},
			filter.HeaderField{Name: "x-forwarded-for", Value: "10.0.35.28"},
			filter.HeaderField{Name: "x-request-id", Value: "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"},
			filter.HeaderField{Name: "content-type", Value: "application/grpc+proto"},
			filter.HeaderField{Name: "x-empty", Value: ""},
			filter.HeaderField{Name: "x-utf8", Value: "caf\xc3\xa9 \xff"},
		),
		ResponseHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":status", Value: "503"},
			filter.HeaderField{Name: "x-envoy-upstream-service-time", Value: "12"},
			filter.HeaderField{Name: "content-type", Value: "application/grpc"},
		),
		ResponseTrailers: filter.NewHeaderMap(
			filter.HeaderField{Name: "grpc-status", Value: "14"},
			filter.HeaderField{Name: "grpc-message", Value: "no healthy upstream"},
		),
	}
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "user", "alice")
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "score", 0.75)
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "allowed", true)
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "count", 3)
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "nothing", nil)
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "nested", map[string]any{"b": 2, "a": "x\"y"})
	return info
}

// emptyInfo has nothing set.
func emptyInfo() *filter.StreamInfo { return &filter.StreamInfo{} }

// goldenCompare compares got with testdata/name, rewriting it with -update.
func goldenCompare(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file (run go test -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// operatorFormats exercises every operator and every operator option.
var operatorFormats = []string{
	"%START_TIME%",
	"%START_TIME(%Y/%m/%dT%H:%M:%S%z)%",
	"%START_TIME(%s)%",
	"%START_TIME(%s.%3f)%",
	"%START_TIME(%f|%1f|%3f|%6f|%9f)%",
	"%START_TIME(%E3S|%E*S|%E0S)%",
	"%START_TIME(%a %A %b %h %B %e %j %y %C %I %p %u %w %Z %T %F %D %R %%)%",
	"%REQ(:METHOD)%",
	"%REQ(:PATH)%",
	"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"%REQ(X-MISSING?:PATH)%",
	"%REQ(X-MISSING?X-ALSO-MISSING)%",
	"%REQ(:AUTHORITY)%",
	"%REQ(:scheme)%",
	"%REQ(User-Agent)%",
	"%REQ(USER-AGENT):4%",
	"%REQ(:PATH):0%",
	"%REQ(X-EMPTY)%",
	"%REQ(X-UTF8)%",
	"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
	"%RESP(:STATUS)%",
	"%RESP(CONTENT-TYPE):11%",
	"%TRAILER(GRPC-MESSAGE)%",
	"%TRAILER(GRPC-MESSAGE):2%",
	"%TRAILER(X-MISSING?GRPC-STATUS)%",
	"%RESPONSE_CODE%",
	"%RESPONSE_CODE_DETAILS%",
	"%RESPONSE_FLAGS%",
	"%BYTES_RECEIVED%",
	"%BYTES_SENT%",
	"%DURATION%",
	"%REQUEST_DURATION%",
	"%RESPONSE_DURATION%",
	"%RESPONSE_TX_DURATION%",
	"%UPSTREAM_HOST%",
	"%UPSTREAM_CLUSTER%",
	"%UPSTREAM_LOCAL_ADDRESS%",
	"%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	"%DOWNSTREAM_REMOTE_ADDRESS%",
	"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
	"%DOWNSTREAM_LOCAL_ADDRESS%",
	"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
	"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%",
	"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%",
	"%DOWNSTREAM_PEER_URI_SAN%",
	"%PROTOCOL%",
	"%REQUESTED_SERVER_NAME%",
	"%ROUTE_NAME%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user):3%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:score)%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:allowed)%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:count)%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:nothing)%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:nested)%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:nested:a)%",
	"%DYNAMIC_METADATA(envoy.filters.http.ext_authz:missing)%",
	"%DYNAMIC_METADATA(other:user)%",
	"%GRPC_STATUS%",
	"%GRPC_STATUS(CAMEL_STRING)%",
	"%GRPC_STATUS(SNAKE_STRING)%",
	"%GRPC_STATUS(NUMBER)%",
	"%GRPC_STATUS_NUMBER%",
	"100%% literal, %%PROTOCOL%% is not an operator",
}

// TestOperatorsGolden renders every operator for a full and an empty
// stream, in text and in typed JSON.
func TestOperatorsGolden(t *testing.T) {
	var out bytes.Buffer
	for _, f := range operatorFormats {
		text, err := Compile(f, Options{})
		if err != nil {
			t.Fatalf("Compile(%q): %v", f, err)
		}
		omit := MustCompile(f, Options{OmitEmptyValues: true})
		js, err := CompileJSON(map[string]any{"v": f}, false, Options{})
		if err != nil {
			t.Fatal(err)
		}
		typed, err := CompileJSON(map[string]any{"v": f}, true, Options{})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s\n", f)
		for _, c := range []struct {
			name string
			info *filter.StreamInfo
		}{{"full", fullInfo()}, {"empty", emptyInfo()}} {
			fmt.Fprintf(&out, "  %-5s text  %s\n", c.name, text.Append(nil, c.info))
			fmt.Fprintf(&out, "  %-5s omit  %s\n", c.name, omit.Append(nil, c.info))
			line := js.Append(nil, c.info)
			checkJSON(t, line)
			fmt.Fprintf(&out, "  %-5s json  %s", c.name, line)
			line = typed.Append(nil, c.info)
			checkJSON(t, line)
			fmt.Fprintf(&out, "  %-5s typed %s", c.name, line)
		}
	}
	goldenCompare(t, "operators.golden", out.Bytes())
}

func checkJSON(t *testing.T, line []byte) {
	t.Helper()
	if !bytes.HasSuffix(line, []byte("\n")) {
		t.Errorf("JSON line %q does not end with a newline", line)
	}
	if !json.Valid(line) {
		t.Errorf("invalid JSON: %s", line)
	}
}

// TestOperatorNamesCovered fails when an operator is added without a
// golden case.
func TestOperatorNamesCovered(t *testing.T) {
	all := strings.Join(operatorFormats, " ")
	for _, n := range OperatorNames() {
		if n == "HOSTNAME" {
			continue // machine-dependent: TestHostname
		}
		if !strings.Contains(all, "%"+n+"%") && !strings.Contains(all, "%"+n+"(") {
			t.Errorf("operator %s has no golden case", n)
		}
	}
}

func TestDefaultFormat(t *testing.T) {
	info := &filter.StreamInfo{
		StartTime:                time.Date(2016, 4, 15, 20, 17, 0, 310_000_000, time.UTC),
		Protocol:                 filter.ProtocolHTTP2,
		LastDownstreamTxByteSent: 226 * time.Millisecond,
		BytesReceived:            154,
		ResponseCode:             204,
		UpstreamHost:             "10.0.2.1:80",
		RequestHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":method", Value: "POST"},
			filter.HeaderField{Name: ":path", Value: "/api/v1/locations"},
			filter.HeaderField{Name: ":authority", Value: "locations"},
			filter.HeaderField{Name: "x-forwarded-for", Value: "10.0.35.28"},
			filter.HeaderField{Name: "user-agent", Value: "nsq2http"},
			filter.HeaderField{Name: "x-request-id", Value: "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"},
		),
		ResponseHeaders: filter.NewHeaderMap(filter.HeaderField{Name: "x-envoy-upstream-service-time", Value: "100"}),
	}
	// Envoy's documented example line for its default format.
	const want = `[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" "10.0.2.1:80"` + "\n"
	for _, format := range []string{"", DefaultFormat} {
		f, err := Compile(format, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(f.Append(nil, info)); got != want {
			t.Errorf("format %q:\n got %q\nwant %q", format, got, want)
		}
	}
	var out bytes.Buffer
	f := MustCompile("", Options{})
	out.Write(f.Append(nil, fullInfo()))
	out.Write(f.Append(nil, emptyInfo()))
	out.Write(MustCompile("", Options{OmitEmptyValues: true}).Append(nil, emptyInfo()))
	goldenCompare(t, "default.golden", out.Bytes())
}

// accessLogDict is a realistic json_format dictionary, with nesting and
// literals.
func accessLogDict() map[string]any {
	return map[string]any{
		"start_time":     "%START_TIME%",
		"method":         "%REQ(:METHOD)%",
		"path":           "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol":       "%PROTOCOL%",
		"response_code":  "%RESPONSE_CODE%",
		"response_flags": "%RESPONSE_FLAGS%",
		"bytes_received": "%BYTES_RECEIVED%",
		"bytes_sent":     "%BYTES_SENT%",
		"duration":       "%DURATION%",
		"upstream": map[string]any{
			"host":         "%UPSTREAM_HOST%",
			"cluster":      "%UPSTREAM_CLUSTER%",
			"service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		},
		"user_agent":     "%REQ(USER-AGENT)%",
		"request_id":     "%REQ(X-REQUEST-ID)%",
		"authority":      "%REQ(:AUTHORITY)%",
		"grpc_status":    "%GRPC_STATUS%",
		"combined":       "%REQ(:METHOD)% %REQ(:PATH)% \"%PROTOCOL%\"",
		"authz_user":     "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%",
		"authz":          "%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%",
		"literal":        "remora",
		"version":        2,
		"sampled":        true,
		"ratio":          0.5,
		"none":           nil,
		"key \"quoted\"": "%ROUTE_NAME%",
	}
}

func TestJSONGolden(t *testing.T) {
	for _, c := range []struct {
		name  string
		typed bool
		omit  bool
	}{
		{"json", false, false},
		{"json_omit_empty", false, true},
		{"typed_json", true, false},
		{"typed_json_omit_empty", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := CompileJSON(accessLogDict(), c.typed, Options{OmitEmptyValues: c.omit})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			for _, info := range []*filter.StreamInfo{fullInfo(), emptyInfo()} {
				line := f.Append(nil, info)
				checkJSON(t, line)
				out.Write(line)
			}
			goldenCompare(t, c.name+".golden", out.Bytes())
		})
	}
}

// TestJSONTypes checks typed and untyped values by decoding the output.
func TestJSONTypes(t *testing.T) {
	decode := func(f *Formatter, info *filter.StreamInfo) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(f.Append(nil, info), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	untyped, _ := CompileJSON(accessLogDict(), false, Options{})
	typed, _ := CompileJSON(accessLogDict(), true, Options{})
	omit, _ := CompileJSON(accessLogDict(), true, Options{OmitEmptyValues: true})

	u := decode(untyped, fullInfo())
	for k, v := range u {
		if _, ok := v.(string); !ok {
			if _, nested := v.(map[string]any); !nested {
				t.Errorf("json_format key %q is %T, want string", k, v)
			}
		}
	}
	if u["response_code"] != "503" || u["user_agent"] != `curl/8.5 "quoted" \ tab	end` {
		t.Errorf("json_format values: %v", u)
	}
	tv := decode(typed, fullInfo())
	if tv["response_code"] != 503.0 || tv["bytes_sent"] != 1024.0 || tv["duration"] != 21.0 {
		t.Errorf("typed numbers: %v %v %v", tv["response_code"], tv["bytes_sent"], tv["duration"])
	}
	if tv["sampled"] != true || tv["none"] != nil || tv["version"] != 2.0 {
		t.Errorf("typed literals: %v %v %v", tv["sampled"], tv["none"], tv["version"])
	}
	te := decode(typed, emptyInfo())
	if v, ok := te["upstream"].(map[string]any)["host"]; !ok || v != nil {
		t.Errorf("typed unset = %v, %v; want null", v, ok)
	}
	oe := decode(omit, emptyInfo())
	if _, ok := oe["method"]; ok {
		t.Errorf("omit_empty_values kept an unset key: %v", oe)
	}
	if _, ok := oe["response_code"]; !ok {
		t.Errorf("omit_empty_values dropped a set number: %v", oe)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, c := range []struct {
		format string
		want   string
	}{
		{"[%START_TIME%] %FOO%", "format: position 15: unknown operator %FOO%"},
		{"%FOO(bar):3%", "format: position 0: unknown operator %FOO%"},
		{"100%", "format: position 3: '%' must start an operator"},
		{"%REQ(:PATH%", "format: position 0: operator %REQ(...)% is missing ')'"},
		{"%REQ(:PATH)", "format: position 0: operator %REQ% is not terminated by '%'"},
		{"%REQ%", "operator %REQ%: requires a parameter"},
		{"%REQ()%", "operator %REQ()%: requires a parameter"},
		{"%REQ(A?)%", "header names must not be empty"},
		{"%REQ(A?B?C)%", "more than one alternative header"},
		{"%REQ(A B)%", `invalid header name "A B"`},
		{"%REQ(:PATH):%", "':' must be followed by a maximum length"},
		{"%REQ(:PATH):99999999999999999999%", "out of range"},
		{"x %DURATION(1)%", "format: position 2: operator %DURATION(1)%: takes no parameters"},
		{"%DURATION:3%", "takes no maximum length"},
		{"%START_TIME(%Q)%", "unsupported START_TIME specifier %Q"},
		{"%START_TIME(%)%", "START_TIME format ends with '%'"},
		{"%START_TIME(%3)%", "must be followed by 'f'"},
		{"%START_TIME(%EX)%", "%E must be"},
		{"%START_TIME:3%", "takes no maximum length"},
		{"%GRPC_STATUS(LOUD)%", "CAMEL_STRING, SNAKE_STRING or NUMBER"},
		{"%DYNAMIC_METADATA(ns::k)%", "must not be empty"},
		{"%DYNAMIC_METADATA%", "requires a parameter"},
		{"%req(:path)%", "position 0: '%' must start an operator"},
	} {
		t.Run(c.format, func(t *testing.T) {
			_, err := Compile(c.format, Options{})
			if err == nil {
				t.Fatalf("Compile(%q) succeeded", c.format)
			}
			var fe *Error
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not *Error", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestCompileJSONErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		dict map[string]any
		want string
	}{
		{"empty", map[string]any{}, "at least one key"},
		{"bad operator", map[string]any{"a": map[string]any{"b": "x %NOPE%"}}, `format: key "a.b": position 2: unknown operator %NOPE%`},
		{"list", map[string]any{"a": []any{"x"}}, `key "a": position 0: value must be`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := CompileJSON(c.dict, true, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestGRPCStatus(t *testing.T) {
	grpcReq := filter.NewHeaderMap(filter.HeaderField{Name: "content-type", Value: "application/grpc"})
	for _, c := range []struct {
		name     string
		info     filter.StreamInfo
		camel    string
		snake    string
		number   string
		typedNum string
	}{
		{"not grpc", filter.StreamInfo{ResponseCode: 200, ResponseTrailers: filter.NewHeaderMap(filter.HeaderField{Name: "grpc-status", Value: "0"})}, "-", "-", "-", "null"},
		{"trailers win", filter.StreamInfo{RequestHeaders: grpcReq, ResponseCode: 200,
			ResponseHeaders:  filter.NewHeaderMap(filter.HeaderField{Name: "grpc-status", Value: "5"}),
			ResponseTrailers: filter.NewHeaderMap(filter.HeaderField{Name: "grpc-status", Value: "0"})}, "OK", "OK", "0", "0"},
		{"trailers only", filter.StreamInfo{RequestHeaders: grpcReq, ResponseCode: 200,
			ResponseHeaders: filter.NewHeaderMap(filter.HeaderField{Name: "grpc-status", Value: "1"})}, "Canceled", "CANCELLED", "1", "1"},
		{"from http 503", filter.StreamInfo{RequestHeaders: grpcReq, ResponseCode: 503}, "Unavailable", "UNAVAILABLE", "14", "14"},
		{"from http 200", filter.StreamInfo{RequestHeaders: grpcReq, ResponseCode: 200}, "Unknown", "UNKNOWN", "2", "2"},
		{"user defined", filter.StreamInfo{RequestHeaders: grpcReq,
			ResponseTrailers: filter.NewHeaderMap(filter.HeaderField{Name: "grpc-status", Value: "42"})}, "42", "42", "42", "42"},
		{"garbage", filter.StreamInfo{RequestHeaders: grpcReq,
			ResponseTrailers: filter.NewHeaderMap(filter.HeaderField{Name: "grpc-status", Value: "x"})}, "-", "-", "-", "null"},
		{"nothing", filter.StreamInfo{RequestHeaders: grpcReq}, "-", "-", "-", "null"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for format, want := range map[string]string{
				"%GRPC_STATUS%": c.camel, "%GRPC_STATUS(SNAKE_STRING)%": c.snake, "%GRPC_STATUS(NUMBER)%": c.number,
			} {
				if got := string(MustCompile(format, Options{}).Append(nil, &c.info)); got != want {
					t.Errorf("%s = %q, want %q", format, got, want)
				}
			}
			typed, _ := CompileJSON(map[string]any{"g": "%GRPC_STATUS_NUMBER%"}, true, Options{})
			if got, want := string(typed.Append(nil, &c.info)), `{"g":`+c.typedNum+"}\n"; got != want {
				t.Errorf("typed = %q, want %q", got, want)
			}
		})
	}
}

func TestIsGRPCRequest(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc": true, "application/grpc+proto": true, "Application/GRPC;x=1": true,
		"application/grpc-web": false, "application/json": false, "": false,
	} {
		h := filter.NewHeaderMap(filter.HeaderField{Name: "content-type", Value: ct})
		if got := IsGRPCRequest(h); got != want {
			t.Errorf("IsGRPCRequest(%q) = %v", ct, got)
		}
	}
	if IsGRPCRequest(nil) {
		t.Error("IsGRPCRequest(nil) = true")
	}
}

func TestHostname(t *testing.T) {
	want, err := os.Hostname()
	if err != nil || want == "" {
		want = "-"
	}
	if got := string(MustCompile("%HOSTNAME%", Options{}).Append(nil, emptyInfo())); got != want {
		t.Errorf("%%HOSTNAME%% = %q, want %q", got, want)
	}
}

// TestAppendReusesBuffer checks that Append only appends.
func TestAppendReusesBuffer(t *testing.T) {
	f := MustCompile("%PROTOCOL% %DOWNSTREAM_REMOTE_ADDRESS%\n", Options{})
	buf := []byte("prefix:")
	buf = f.Append(buf, fullInfo())
	buf = f.Append(buf, fullInfo())
	if got := string(buf); got != "prefix:HTTP/2 192.0.2.10:51234\nHTTP/2 192.0.2.10:51234\n" {
		t.Errorf("got %q", got)
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range operatorFormats {
		f.Add(s)
	}
	f.Add(DefaultFormat)
	f.Add("%")
	f.Add("%%%")
	f.Add("%REQ(")
	f.Add("%START_TIME(%E")
	info := fullInfo()
	empty := emptyInfo()
	f.Fuzz(func(t *testing.T, format string) {
		for _, opts := range []Options{{}, {OmitEmptyValues: true}} {
			fm, err := Compile(format, opts)
			if err != nil {
				if !strings.HasPrefix(err.Error(), "format: ") {
					t.Fatalf("error without prefix: %v", err)
				}
				continue
			}
			fm.Append(nil, info)
			fm.Append(nil, empty)
			for _, typed := range []bool{false, true} {
				js, err := CompileJSON(map[string]any{"k": format, "n": map[string]any{"k": format}}, typed, opts)
				if err != nil {
					t.Fatalf("CompileJSON failed where Compile succeeded: %v", err)
				}
				for _, in := range []*filter.StreamInfo{info, empty} {
					if line := js.Append(nil, in); !json.Valid(line) {
						t.Fatalf("invalid JSON for %q: %s", format, line)
					}
				}
			}
		}
	})
}

func BenchmarkFormatDefault(b *testing.B) {
	f := MustCompile("", Options{})
	info := fullInfo()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Append(buf[:0], info)
	}
}

func BenchmarkFormatJSON(b *testing.B) {
	dict := accessLogDict()
	delete(dict, "authz") // a metadata map marshals with allocations by design
	for _, typed := range []bool{false, true} {
		f, err := CompileJSON(dict, typed, Options{})
		if err != nil {
			b.Fatal(err)
		}
		name := "json_format"
		if typed {
			name = "typed_json_format"
		}
		b.Run(name, func(b *testing.B) {
			info := fullInfo()
			buf := make([]byte, 0, 2048)
			b.ReportAllocs()
			for b.Loop() {
				buf = f.Append(buf[:0], info)
			}
		})
	}
}

func TestResponseFlagsMatchString(t *testing.T) {
	f := MustCompile("%RESPONSE_FLAGS%", Options{})
	for _, flags := range []filter.ResponseFlags{0, filter.NoRouteFound, filter.UpstreamConnectionFailure | filter.UpstreamRetryLimitExceeded, 1<<28 - 1} {
		info := &filter.StreamInfo{ResponseFlags: flags}
		if got, want := string(f.Append(nil, info)), flags.String(); got != want {
			t.Errorf("%%RESPONSE_FLAGS%% = %q, want %q", got, want)
		}
	}
}

// TestStartTimeSecondCache checks that rendering through the per-second
// cache gives what rendering every field afresh gives, for times that
// revisit a second, cross seconds back and forth, and precede 1970.
func TestStartTimeSecondCache(t *testing.T) {
	base := time.Date(2026, 11, 22, 9, 14, 59, 999_999_999, time.UTC)
	times := []time.Time{
		base, base.Add(-1), base.Add(1), base.Add(2 * time.Millisecond), base.Add(-5 * time.Millisecond),
		base.Add(time.Second + 123_456_789), base, time.Unix(-1, 5), time.Unix(-1, 999_999_999), time.Unix(0, 0),
		time.Date(2026, 11, 22, 10, 14, 59, 1, time.FixedZone("CET", 3600)),
	}
	for _, f := range []string{"", "%s.%3f", "%f|%1f|%3f|%6f|%9f", "%E3S|%E*S|%E0S", "%Y-%m-%dT%H:%M:%S", "%T.%9f %a %j"} {
		t.Run(f, func(t *testing.T) {
			tf, err := compileTime(f)
			if err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				for _, tm := range times {
					got := string(tf.append([]byte("x"), tm))
					want := "x" + string(tf.appendFields(nil, tm, func(int, int) {}))
					if got != want {
						t.Fatalf("round %d, %v: cached %q, fresh %q", round, tm, got, want)
					}
				}
			}
		})
	}
}
