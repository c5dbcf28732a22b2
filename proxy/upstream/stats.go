package upstream

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stat indexes one of a cluster's counters or gauges. Stats are plain
// atomics bumped on the hot path; the collector reads them at scrape time,
// so a request pays no label lookup and no lock for its stats.
type stat int

const (
	statRqTotal stat = iota
	statRqActive
	statRqPendingTotal
	statRqPendingActive
	statRqPendingOverflow
	statRqCompleted
	statRqReset
	statRqTimeout
	statRqRetry
	statRqRetryOverflow
	statCxTotal
	statCxActive
	statCxHTTP1Total
	statCxHTTP2Total
	statCxConnectFail
	statCxConnectTimeout
	statCxDestroy
	statCxIdleTimeout
	statCxMaxRequests
	statCxOverflow
	statCxNoReuse
	statCxStale
	statUpdateAttempt
	statUpdateSuccess
	statUpdateFailure
	statMembershipChange
	statMembershipTotal
	statMembershipHealthy
	statLBHealthyPanic
	statOutlierEjectionsActive
	statOutlierEnforcedTotal
	statOutlierEnforced5xx
	statOutlierEnforcedGateway
	statOutlierDetected5xx
	statOutlierDetectedGateway
	statOutlierEjectionsOverflow
	statHCAttempt
	statHCSuccess
	statHCFailure
	statHCNetworkFailure
	statSSLHandshake
	statSSLConnectionError
	numStats
)

type statDesc struct {
	name  string // Envoy's stat name below cluster.<name>. (dots become underscores in Prometheus)
	gauge bool
	help  string
}

var statDescs = [numStats]statDesc{
	statRqTotal:                  {"upstream_rq_total", false, "Requests sent to upstream hosts."},
	statRqActive:                 {"upstream_rq_active", true, "Requests in flight to upstream hosts."},
	statRqPendingTotal:           {"upstream_rq_pending_total", false, "Requests that waited for a connection in a pending queue."},
	statRqPendingActive:          {"upstream_rq_pending_active", true, "Requests waiting for a connection now."},
	statRqPendingOverflow:        {"upstream_rq_pending_overflow", false, "Requests failed by the pending-requests or requests circuit breaker."},
	statRqCompleted:              {"upstream_rq_completed", false, "Requests whose exchange finished normally."},
	statRqReset:                  {"upstream_rq_reset", false, "Requests reset before finishing."},
	statRqTimeout:                {"upstream_rq_timeout", false, "Requests the router timed out waiting for a response."},
	statRqRetry:                  {"upstream_rq_retry", false, "Retries admitted by the retries circuit breaker."},
	statRqRetryOverflow:          {"upstream_rq_retry_overflow", false, "Retries refused by the retries circuit breaker."},
	statCxTotal:                  {"upstream_cx_total", false, "Connections established."},
	statCxActive:                 {"upstream_cx_active", true, "Connections open now."},
	statCxHTTP1Total:             {"upstream_cx_http1_total", false, "HTTP/1.1 connections established."},
	statCxHTTP2Total:             {"upstream_cx_http2_total", false, "HTTP/2 connections established."},
	statCxConnectFail:            {"upstream_cx_connect_fail", false, "Connection attempts that failed (timeouts included)."},
	statCxConnectTimeout:         {"upstream_cx_connect_timeout", false, "Connection attempts that timed out."},
	statCxDestroy:                {"upstream_cx_destroy", false, "Connections closed."},
	statCxIdleTimeout:            {"upstream_cx_idle_timeout", false, "Connections closed by the idle timeout."},
	statCxMaxRequests:            {"upstream_cx_max_requests", false, "Connections closed after max_requests_per_connection."},
	statCxOverflow:               {"upstream_cx_overflow", false, "Times the connections circuit breaker refused a new connection."},
	statCxNoReuse:                {"upstream_cx_not_reused", false, "Connections closed after a request instead of being reused: Connection: close, an error, a reset or an unread body (Remora-specific)."},
	statCxStale:                  {"upstream_cx_stale", false, "Pooled connections found closed by the upstream when a request was sent on them, before any response byte (Remora-specific)."},
	statUpdateAttempt:            {"update_attempt", false, "Host-set resolutions attempted (STRICT_DNS)."},
	statUpdateSuccess:            {"update_success", false, "Host-set resolutions that succeeded."},
	statUpdateFailure:            {"update_failure", false, "Host-set resolutions that failed (DNS errors)."},
	statMembershipChange:         {"membership_change", false, "Host-set changes."},
	statMembershipTotal:          {"membership_total", true, "Hosts in the cluster."},
	statMembershipHealthy:        {"membership_healthy", true, "Hosts neither ejected nor failing active health checks."},
	statLBHealthyPanic:           {"lb_healthy_panic", false, "Hosts picked in panic mode (fewer than 50% of the hosts healthy: all are used)."},
	statOutlierEjectionsActive:   {"outlier_detection.ejections_active", true, "Hosts ejected by outlier detection now."},
	statOutlierEnforcedTotal:     {"outlier_detection.ejections_enforced_total", false, "Ejections enforced, of any kind."},
	statOutlierEnforced5xx:       {"outlier_detection.ejections_enforced_consecutive_5xx", false, "Ejections enforced for consecutive 5xx (local failures included)."},
	statOutlierEnforcedGateway:   {"outlier_detection.ejections_enforced_consecutive_gateway_failure", false, "Ejections enforced for consecutive gateway failures."},
	statOutlierDetected5xx:       {"outlier_detection.ejections_detected_consecutive_5xx", false, "Consecutive-5xx outliers detected, enforced or not."},
	statOutlierDetectedGateway:   {"outlier_detection.ejections_detected_consecutive_gateway_failure", false, "Consecutive-gateway-failure outliers detected, enforced or not."},
	statOutlierEjectionsOverflow: {"outlier_detection.ejections_overflow", false, "Ejections refused by max_ejection_percent."},
	statHCAttempt:                {"health_check.attempt", false, "Active health checks started."},
	statHCSuccess:                {"health_check.success", false, "Active health checks passed."},
	statHCFailure:                {"health_check.failure", false, "Active health checks failed (network failures included)."},
	statHCNetworkFailure:         {"health_check.network_failure", false, "Active health checks failed by a connection error or timeout."},
	statSSLHandshake:             {"ssl.handshake", false, "Upstream TLS handshakes completed."},
	statSSLConnectionError:       {"ssl.connection_error", false, "Upstream TLS handshakes that failed."},
}

// clusterStats holds one cluster's stats.
type clusterStats [numStats]atomic.Int64

func (s *clusterStats) inc(i stat)          { s[i].Add(1) }
func (s *clusterStats) dec(i stat)          { s[i].Add(-1) }
func (s *clusterStats) get(i stat) int64    { return s[i].Load() }
func (s *clusterStats) set(i stat, v int64) { s[i].Store(v) }

// hostStat indexes a per-host stat shown by the /clusters admin view.
type hostStat int

const (
	hostCxActive hostStat = iota
	hostCxConnectFail
	hostCxTotal
	hostRqActive
	hostRqError
	hostRqSuccess
	hostRqTimeout
	hostRqTotal
	numHostStats
)

var hostStatNames = [numHostStats]string{
	"cx_active", "cx_connect_fail", "cx_total", "rq_active", "rq_error", "rq_success", "rq_timeout", "rq_total",
}

// collector exports every cluster's stats as Prometheus metrics named
// envoy_cluster_<stat>{envoy_cluster_name="<cluster>"}, the names Envoy's
// own Prometheus endpoint uses, and the circuit breakers as
// envoy_cluster_circuit_breakers_{limit,open}{envoy_cluster_name,resource},
// and responses by class as envoy_cluster_upstream_rq_xx{envoy_cluster_name,
// envoy_response_code_class}.
type collector struct {
	m     *Manager
	descs [numStats]*prometheus.Desc
	limit *prometheus.Desc
	open  *prometheus.Desc
	rqXX  *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(m *Manager) *collector {
	c := &collector{m: m}
	for i, d := range statDescs {
		c.descs[i] = prometheus.NewDesc("envoy_cluster_"+strings.ReplaceAll(d.name, ".", "_"), d.help, []string{"envoy_cluster_name"}, nil)
	}
	c.limit = prometheus.NewDesc("envoy_cluster_circuit_breakers_limit",
		"Configured circuit-breaker limits (default priority).", []string{"envoy_cluster_name", "resource"}, nil)
	c.rqXX = prometheus.NewDesc("envoy_cluster_upstream_rq_xx",
		"Upstream responses by status class.", []string{"envoy_cluster_name", "envoy_response_code_class"}, nil)
	c.open = prometheus.NewDesc("envoy_cluster_circuit_breakers_open",
		"1 while a circuit breaker is at its limit (Envoy's circuit_breakers.default.*_open).", []string{"envoy_cluster_name", "resource"}, nil)
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.limit
	ch <- c.open
	ch <- c.rqXX
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, cl := range c.m.Clusters() {
		for i, d := range statDescs {
			t := prometheus.CounterValue
			if d.gauge {
				t = prometheus.GaugeValue
			}
			ch <- prometheus.MustNewConstMetric(c.descs[i], t, float64(cl.stats.get(stat(i))), cl.name)
		}
		for i := range cl.rqClass {
			ch <- prometheus.MustNewConstMetric(c.rqXX, prometheus.CounterValue, float64(cl.rqClass[i].Load()), cl.name, classLabels[i])
		}
		for _, r := range cl.breakers() {
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(r.limit), cl.name, r.name)
			open := 0.0
			if r.open() {
				open = 1
			}
			ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, open, cl.name, r.name)
		}
	}
}

var classLabels = [5]string{"1", "2", "3", "4", "5"}

// WriteStats writes every cluster's stats as Envoy's /stats text view does:
// "cluster.<name>.<stat>: <value>" lines, sorted by name.
func (m *Manager) WriteStats(w io.Writer) error {
	clusters := m.Clusters()
	lines := make([]string, 0, len(clusters)*int(numStats))
	for _, cl := range clusters {
		for i, d := range statDescs {
			lines = append(lines, fmt.Sprintf("cluster.%s.%s: %d", cl.name, d.name, cl.stats.get(stat(i))))
		}
		for i := range cl.rqClass {
			lines = append(lines, fmt.Sprintf("cluster.%s.upstream_rq_%sxx: %d", cl.name, classLabels[i], cl.rqClass[i].Load()))
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return fmt.Errorf("upstream: writing stats: %w", err)
		}
	}
	return nil
}
