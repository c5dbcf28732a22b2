package accesslog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/proxy/filter"
)

// closeTimeout bounds how long a sink may take to deliver what it holds
// when the proxy's configuration is torn down.
const closeTimeout = 5 * time.Second

func init() {
	filter.RegisterAccessLog(proxySink{TypeFile})
	filter.RegisterAccessLog(proxySink{TypeGRPC})
}

// proxySink builds sinks for the proxy's http_connection_manager
// access_log entries ({type: file|grpc, config: {...}}).
type proxySink struct{ typ string }

var _ filter.AccessLogFactory = proxySink{}

func (p proxySink) Type() string { return p.typ }

// NewHandler decodes the entry's config as the sink's configuration and
// starts the sink. The proxy closes it (delivering what it holds, within
// closeTimeout) when the configuration goes, and reopens file sinks on
// SIGUSR1 and POST /reopen_logs.
func (p proxySink) NewHandler(e filter.AccessLogEntry, env filter.Env) (filter.AccessLogHandler, error) {
	scalar := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	entry := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar("type"), scalar(p.typ)}}
	if e.Name != "" {
		entry.Content = append(entry.Content, scalar("name"), scalar(e.Name))
	}
	if e.Filter != nil {
		entry.Content = append(entry.Content, scalar("filter"), e.Filter)
	}
	if e.Config != nil {
		entry.Content = append(entry.Content, scalar("config"), e.Config)
	}
	var cfg Config
	if err := entry.Decode(&cfg); err != nil {
		return nil, err
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(""); err != nil {
		return nil, err
	}
	m, err := sharedMetrics(env.Registry)
	if err != nil {
		return nil, fmt.Errorf("accesslog: metrics: %w", err)
	}
	h, err := New(cfg, Options{Logger: env.Logger, Metrics: m, NodeID: env.NodeID, NodeCluster: env.Cluster})
	if err != nil {
		return nil, err
	}
	if env.AddCloser != nil {
		env.AddCloser(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			defer cancel()
			return h.Close(ctx)
		})
	}
	if env.AddReopener != nil {
		env.AddReopener(h.Reopen)
	}
	return h, nil
}

// sharedMetrics returns the access-log metrics registered on reg, creating
// them for the first sink: every sink of a process shares one set, told
// apart by the sink label.
func sharedMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m, err := NewMetrics(reg)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*Metrics); ok {
			return existing, nil
		}
	}
	return m, err
}
