package accesslog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/accesslog"
	"github.com/remora-mesh/remora/proxy/filter"
)

func ExampleNew() {
	dir, _ := os.MkdirTemp("", "accesslog-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "access.log")

	// One entry of an access_log list, as the proxy's config holds it.
	var cfg accesslog.Config
	src := `
type: file
filter: {status_code_filter: {comparison: {op: GE, value: 400}}}
config:
  path: ` + path + `
  format: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"
`
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		fmt.Println(err)
		return
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate("access_log[0]"); err != nil {
		fmt.Println(err)
		return
	}

	metrics, _ := accesslog.NewMetrics(prometheus.NewRegistry())
	h, err := accesslog.New(cfg, accesslog.Options{Logger: zap.NewNop(), Metrics: metrics})
	if err != nil {
		fmt.Println(err)
		return
	}
	var _ filter.AccessLogHandler = h // what the connection manager calls

	for _, code := range []int{200, 404} {
		h.Log(&filter.StreamInfo{
			ResponseCode:  code,
			ResponseFlags: filter.NoRouteFound,
			RequestHeaders: filter.NewHeaderMap(
				filter.HeaderField{Name: ":method", Value: "GET"},
				filter.HeaderField{Name: ":path", Value: "/missing"},
			),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		fmt.Println(err)
	}
	b, _ := os.ReadFile(path)
	fmt.Print(string(b))
	// Output:
	// GET /missing 404 NR
}
