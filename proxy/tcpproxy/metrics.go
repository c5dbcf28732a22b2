package tcpproxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the TCP proxies' Envoy-style stats (remora_tcp_*), labelled
// by stat_prefix. One Metrics is shared by every proxy of a server and
// registered once on its registry.
type Metrics struct {
	cxTotal     *prometheus.CounterVec
	cxActive    *prometheus.GaugeVec
	rxBytes     *prometheus.CounterVec
	txBytes     *prometheus.CounterVec
	idle        *prometheus.CounterVec
	connectFail *prometheus.CounterVec
	denied      *prometheus.CounterVec
	halfClose   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	l := []string{"stat_prefix"}
	c := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "remora", Subsystem: "tcp", Name: name, Help: help}, l)
	}
	m := &Metrics{
		cxTotal:     c("downstream_cx_total", "Downstream connections handled."),
		rxBytes:     c("downstream_cx_rx_bytes_total", "Bytes received from downstream and sent upstream."),
		txBytes:     c("downstream_cx_tx_bytes_total", "Bytes received from upstream and sent downstream."),
		idle:        c("idle_timeout_total", "Connections closed by the idle timeout."),
		connectFail: c("upstream_cx_connect_fail_total", "Connections closed because no upstream connection could be made (UF, UO, UH)."),
		denied:      c("downstream_cx_denied_total", "Connections closed because the Mixer check denied them (UAEX)."),
		halfClose:   c("downstream_cx_half_closed_total", "Connections whose downstream ended its side (FIN) while the upstream could still send."),
		cxActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "remora", Subsystem: "tcp", Name: "downstream_cx_active",
			Help: "Open downstream connections."}, l),
	}
	for _, col := range []prometheus.Collector{m.cxTotal, m.cxActive, m.rxBytes, m.txBytes, m.idle, m.connectFail, m.denied, m.halfClose} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("tcpproxy: metrics: %w", err)
		}
	}
	return m, nil
}

// prefixed are one stat_prefix's children, looked up once.
type prefixed struct {
	cxTotal, rxBytes, txBytes, idle, connectFail, denied, halfClose prometheus.Counter
	cxActive                                                        prometheus.Gauge
}

func (m *Metrics) with(prefix string) prefixed {
	return prefixed{
		cxTotal: m.cxTotal.WithLabelValues(prefix), cxActive: m.cxActive.WithLabelValues(prefix),
		rxBytes: m.rxBytes.WithLabelValues(prefix), txBytes: m.txBytes.WithLabelValues(prefix),
		idle: m.idle.WithLabelValues(prefix), connectFail: m.connectFail.WithLabelValues(prefix),
		denied: m.denied.WithLabelValues(prefix), halfClose: m.halfClose.WithLabelValues(prefix),
	}
}
