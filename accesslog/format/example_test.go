package format_test

import (
	"fmt"
	"os"
	"time"

	"github.com/remora-mesh/remora/accesslog/format"
	"github.com/remora-mesh/remora/proxy/filter"
)

func exampleStream() *filter.StreamInfo {
	return &filter.StreamInfo{
		StartTime:                time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC),
		Protocol:                 filter.ProtocolHTTP2,
		LastDownstreamTxByteSent: 21 * time.Millisecond,
		ResponseCode:             503,
		ResponseFlags:            filter.UpstreamConnectionFailure,
		UpstreamCluster:          "backend",
		UpstreamHost:             "10.0.0.7:8080",
		RequestHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":method", Value: "POST"},
			filter.HeaderField{Name: ":path", Value: "/api/v1/locations"},
			filter.HeaderField{Name: "x-envoy-original-path", Value: "/original"},
		),
	}
}

func ExampleCompile() {
	f, err := format.Compile(`%START_TIME(%s.%3f)% %REQ(:METHOD)% %REQ(:PATH):8% %RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(USER-AGENT)%`+"\n", format.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(f.Append(nil, exampleStream()))

	_, err = format.Compile("[%START_TIME%] %FOO%", format.Options{})
	fmt.Println(err)
	// Output:
	// 1704164645.678 POST /api/v1/ 503 UF -
	// format: position 15: unknown operator %FOO%
}

func ExampleCompileJSON() {
	f, err := format.CompileJSON(map[string]any{
		"start_time":    "%START_TIME%",
		"method":        "%REQ(:METHOD)%",
		"path":          "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"response_code": "%RESPONSE_CODE%",
		"duration":      "%DURATION%",
		"upstream": map[string]any{
			"host":    "%UPSTREAM_HOST%",
			"cluster": "%UPSTREAM_CLUSTER%",
		},
		"request":        "%REQ(:METHOD)% %REQ(:PATH)%",
		"user_agent":     "%REQ(USER-AGENT)%",
		"format_version": 2,
	}, true, format.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(f.Append(nil, exampleStream()))
	// Output:
	// {"duration":21,"format_version":2,"method":"POST","path":"/original","request":"POST /api/v1/locations","response_code":503,"start_time":"2024-01-02T03:04:05.678Z","upstream":{"cluster":"backend","host":"10.0.0.7:8080"},"user_agent":null}
}
