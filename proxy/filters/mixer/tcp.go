package mixer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/attributes"
	iconfig "github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/proxy/filter"
)

// DefaultReportInterval is how often a TCP connection's bytes are reported
// while it is open (Istio's report_interval).
const DefaultReportInterval = 10 * time.Second

// Connection events (connection.event).
const (
	EventOpen     = "open"
	EventContinue = "continue"
	EventClose    = "close"
)

// TCPConfig is the mixer entry of a tcp_proxy: the HTTP filter's
// configuration (server, identity, mixer_attributes, direction,
// disable_check_calls, disable_report_calls, quotas) plus how often an open
// connection is reported.
type TCPConfig struct {
	Config `yaml:",inline"`
	// ReportInterval is the period of the "continue" reports of an open
	// connection; default 10s.
	ReportInterval iconfig.Duration `yaml:"report_interval,omitempty"`
}

// TCP checks and reports the connections of one tcp_proxy. It is safe for
// concurrent use.
type TCP struct {
	c        *compiled
	interval time.Duration
}

// connIDs numbers connections for connection.id when the listener gave
// none.
var connIDs atomic.Uint64

// ParseTCPConfig decodes a tcp_proxy's mixer entry strictly, applies
// defaults and validates it; every problem is reported with its field
// path.
func ParseTCPConfig(node *yaml.Node) (TCPConfig, error) {
	var cfg TCPConfig
	if node == nil {
		return cfg, errors.New("mixer: no configuration")
	}
	if err := iconfig.DecodeStrict(node, &cfg); err != nil {
		return cfg, fmt.Errorf("mixer: %w", err)
	}
	cfg.ApplyDefaults()
	if cfg.ReportInterval == 0 {
		cfg.ReportInterval = iconfig.Duration(DefaultReportInterval)
	}
	errs := []error{cfg.Validate()}
	if cfg.ReportInterval < 0 {
		errs = append(errs, errors.New("report_interval: must be positive"))
	}
	if !cfg.ForwardAttributes.IsZero() {
		errs = append(errs, errors.New("forward_attributes: not used on TCP connections (there is no header to carry them)"))
	}
	if cfg.IgnoreForwardedAttributes {
		errs = append(errs, errors.New("ignore_forwarded_attributes: not used on TCP connections"))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("mixer: %w", err)
	}
	return cfg, nil
}

// NewTCP parses a tcp_proxy's mixer entry (see ParseTCPConfig) and builds
// its Mixer client; the client is closed (flushing queued reports) through
// env.AddCloser.
func NewTCP(node *yaml.Node, env filter.Env) (*TCP, error) {
	cfg, err := ParseTCPConfig(node)
	if err != nil {
		return nil, err
	}
	c, err := newCompiled(cfg.Config, env)
	if err != nil {
		return nil, err
	}
	return &TCP{c: c, interval: cfg.ReportInterval.D()}, nil
}

// ReportInterval is the period of the "continue" reports.
func (t *TCP) ReportInterval() time.Duration { return t.interval }

// TCPSession is the mixer state of one connection, from Open to Close. Its
// methods must be called from one goroutine at a time.
type TCPSession struct {
	t          *TCP
	base       attributes.Bag
	report     bool
	start      time.Time
	recv, sent uint64 // totals at the last report
	checked    bool
	cacheHit   bool
	code       codes.Code
	message    string
}

// Open builds the connection's attributes from info (addresses, TLS,
// start time) and conn, checks them unless disable_check_calls, and
// reports the opening ("open"). When the check denies, it sets flag UAEX
// on info and returns false: the caller must close the connection, and no
// report is made for it (as Istio's TCP filter does). Open may block for
// the check (bounded by the client's timeout and ctx).
func (t *TCP) Open(ctx context.Context, info *filter.StreamInfo, conn filter.ConnectionInfo) (*TCPSession, bool) {
	c := t.c
	direction := c.cfg.Direction
	if direction == "" {
		direction = conn.Direction
	}
	if direction != attributes.ReporterOutbound {
		direction = attributes.ReporterInbound
	}
	bd := attributes.NewBuilder(24)
	if direction == attributes.ReporterInbound {
		bd.Merge(c.inbound)
	} else {
		bd.Merge(c.outbound)
	}
	if ap := info.DownstreamRemoteAddress; ap.IsValid() {
		bd.Set(attributes.SourceIP, attributes.IPAddress(ap.Addr()))
		bd.Set(attributes.SourcePort, attributes.Int64(int64(ap.Port())))
	}
	if ap := info.DownstreamLocalAddress; ap.IsValid() {
		bd.Set(attributes.DestinationIP, attributes.IPAddress(ap.Addr()))
		bd.Set(attributes.DestinationPort, attributes.Int64(int64(ap.Port())))
	}
	bd.Set(attributes.ConnectionMTLS, attributes.Bool(info.DownstreamTLS && conn.PeerCertificatePresented))
	if info.RequestedServerName != "" {
		bd.Set(attributes.ConnectionRequestedServerName, attributes.String(info.RequestedServerName))
	}
	if direction == attributes.ReporterInbound && info.DownstreamPeerURISAN != "" {
		bd.Set(attributes.SourcePrincipal, attributes.String(strings.TrimPrefix(info.DownstreamPeerURISAN, "spiffe://")))
	}
	id := conn.ID
	if id == 0 {
		id = connIDs.Add(1) | 1<<63 // never collides with the listener's ids
	}
	bd.Set(attributes.ConnectionID, attributes.String(strconv.FormatUint(id, 10)))
	bd.Set(attributes.ContextProtocol, attributes.String(attributes.ProtocolTCP))
	start := info.StartTime
	if start.IsZero() {
		start = time.Now()
	}
	bd.Set(attributes.ContextTime, attributes.Timestamp(start))
	s := &TCPSession{t: t, report: !c.cfg.DisableReportCalls, start: start}
	s.base = bd.Build()
	if !c.cfg.DisableCheckCalls {
		res := c.client.Check(ctx, s.base, c.quotas)
		s.checked, s.cacheHit, s.code, s.message = true, res.CacheHit, res.Status, res.Message
		if res.TransportErr != nil && s.message == "" {
			s.message = res.TransportErr.Error()
		}
		if !res.Allowed() {
			info.SetResponseFlag(filter.UnauthorizedExternalService)
			info.ResponseCodeDetails = "mixer_check_denied"
			c.log.Debug("tcp connection denied", zap.Stringer("code", res.Status), zap.String("message", s.message))
			return s, false
		}
	}
	s.send(EventOpen, 0, 0, 0, time.Now())
	return s, true
}

// Report sends a "continue" report with the bytes moved since the last
// report; received and sent are the connection's running totals (from
// and to the downstream).
func (s *TCPSession) Report(received, sent uint64) {
	s.send(EventContinue, received, sent, 0, time.Now())
}

// Close sends the "close" report with the final totals in info
// (BytesReceived, BytesSent), its duration and response flags. It does
// nothing for a denied connection.
func (s *TCPSession) Close(info *filter.StreamInfo) {
	if s.checked && s.code != codes.OK {
		return
	}
	s.send(EventClose, info.BytesReceived, info.BytesSent, info.ResponseFlags, time.Now())
}

func (s *TCPSession) send(event string, recv, sent uint64, flags filter.ResponseFlags, now time.Time) {
	if !s.report {
		return
	}
	bd := s.t.c.client.ReportBuilder(s.base)
	bd.Set(attributes.ConnectionEvent, attributes.String(event))
	bd.Set(attributes.ConnectionReceivedBytes, attributes.Int64(int64(recv-s.recv)))
	bd.Set(attributes.ConnectionReceivedBytesTotal, attributes.Int64(int64(recv)))
	bd.Set(attributes.ConnectionSentBytes, attributes.Int64(int64(sent-s.sent)))
	bd.Set(attributes.ConnectionSentBytesTotal, attributes.Int64(int64(sent)))
	s.recv, s.sent = recv, sent
	bd.Set(attributes.ContextTime, attributes.Timestamp(now))
	if event == EventClose {
		bd.Set(attributes.ConnectionDuration, attributes.Duration(now.Sub(s.start)))
		if flags != 0 {
			bd.Set(attributes.ContextProxyErrorCode, attributes.String(flags.String()))
		}
	}
	if s.checked {
		bd.Set(attributes.CheckCacheHit, attributes.Bool(s.cacheHit))
		if s.message != "" {
			bd.Set(attributes.CheckErrorMessage, attributes.String(s.message))
		}
	}
	s.t.c.client.Report(bd)
}
