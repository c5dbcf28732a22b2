package upstream

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// writeClusters writes the admin /clusters view in Envoy's text format,
// "<cluster>::<field>::<value>" and "<cluster>::<address>::<stat>::<value>"
// lines: each cluster's observability name, circuit-breaker limits,
// added_via_api, outlier-detection and health-check settings (Remora's
// additions, "<cluster>::outlier_detection::<field>::<value>" and
// "<cluster>::health_check::<field>::<value>"), then per host its stats,
// hostname, health_flags ("healthy", or "/failed_active_hc",
// "/failed_outlier_check", "/pending_active_hc" concatenated), weight,
// locality, and success rates (-1: success-rate outlier detection is not
// implemented). rq_success counts requests that ended with Close, rq_error
// those that ended with Reset or failed to send.
func (m *Manager) writeClusters(w io.Writer) error {
	bw := newErrWriter(w)
	for _, c := range m.Clusters() {
		bw.printf("%s::observability_name::%s\n", c.name, c.name)
		if c.outlier != nil {
			bw.printf("%s::outlier::success_rate_average::-1\n%s::outlier::success_rate_ejection_threshold::-1\n", c.name, c.name)
		}
		for _, r := range c.breakers() {
			bw.printf("%s::default_priority::%s::%d\n", c.name, r.name, r.limit)
		}
		bw.printf("%s::added_via_api::false\n", c.name)
		if od := c.cfg.OutlierDetection; od != nil {
			p := c.name + "::outlier_detection::"
			bw.printf("%sconsecutive_5xx::%d\n%sconsecutive_gateway_failure::%d\n", p, od.Consecutive5xx, p, od.ConsecutiveGatewayFailure)
			bw.printf("%sinterval::%v\n%sbase_ejection_time::%v\n%smax_ejection_time::%v\n", p, od.Interval.D(), p, od.BaseEjectionTime.D(), p, od.MaxEjectionTime.D())
			bw.printf("%smax_ejection_percent::%d\n", p, od.MaxEjectionPercent)
			bw.printf("%senforcing_consecutive_5xx::%d\n%senforcing_consecutive_gateway_failure::%d\n", p,
				c.outlier.enforcing[ejectConsecutive5xx], p, c.outlier.enforcing[ejectConsecutiveGateway])
			bw.printf("%ssuccessful_active_health_check_uneject_host::%t\n", p, c.outlier.hcUneject)
		}
		if c.hc != nil {
			hc := c.hc.cfg
			p := c.name + "::health_check::"
			kind := "tcp"
			if hc.HTTP != nil {
				kind = "http"
			}
			bw.printf("%stype::%s\n", p, kind)
			if hc.HTTP != nil {
				bw.printf("%spath::%s\n%shost::%s\n", p, hc.HTTP.Path, p, hc.HTTP.Host)
			}
			bw.printf("%sinterval::%v\n%sno_traffic_interval::%v\n%stimeout::%v\n", p, hc.Interval.D(), p, hc.NoTrafficInterval.D(), p, hc.Timeout.D())
			bw.printf("%sunhealthy_threshold::%d\n%shealthy_threshold::%d\n", p, hc.UnhealthyThreshold, p, hc.HealthyThreshold)
		}
		for _, h := range c.Hosts() {
			p := c.name + "::" + h.addr + "::"
			for i, n := range hostStatNames {
				bw.printf("%s%s::%d\n", p, n, h.stats[i].Load())
			}
			bw.printf("%shostname::%s\n", p, h.hostname)
			bw.printf("%shealth_flags::%s\n", p, h.HealthFlags())
			bw.printf("%sweight::%d\n", p, h.weight)
			bw.printf("%sregion::\n%szone::\n%ssub_zone::\n", p, p, p)
			bw.printf("%scanary::false\n%spriority::0\n", p, p)
			bw.printf("%ssuccess_rate::-1\n%slocal_origin_success_rate::-1\n", p, p)
		}
	}
	if bw.err != nil {
		return fmt.Errorf("upstream: writing clusters: %w", bw.err)
	}
	return nil
}

// The JSON view's shapes follow Envoy's admin ClusterStatus (proto3 JSON
// field names; counters as strings as proto3 JSON renders uint64), with
// Remora's additions outlier_detection and health_check holding the
// cluster's settings.
type (
	jsonClusters struct {
		ClusterStatuses []jsonCluster `json:"cluster_statuses"`
	}
	jsonCluster struct {
		Name              string           `json:"name"`
		ObservabilityName string           `json:"observability_name"`
		AddedViaAPI       bool             `json:"added_via_api"`
		CircuitBreakers   jsonBreakers     `json:"circuit_breakers"`
		OutlierDetection  *jsonOutlier     `json:"outlier_detection,omitempty"`
		HealthCheck       *jsonHealthCheck `json:"health_check,omitempty"`
		HostStatuses      []jsonHostStatus `json:"host_statuses"`
	}
	jsonBreakers struct {
		Thresholds []map[string]any `json:"thresholds"`
	}
	jsonOutlier struct {
		Consecutive5xx                     uint32 `json:"consecutive_5xx"`
		ConsecutiveGatewayFailure          uint32 `json:"consecutive_gateway_failure"`
		Interval                           string `json:"interval"`
		BaseEjectionTime                   string `json:"base_ejection_time"`
		MaxEjectionTime                    string `json:"max_ejection_time"`
		MaxEjectionPercent                 uint32 `json:"max_ejection_percent"`
		EnforcingConsecutive5xx            int    `json:"enforcing_consecutive_5xx"`
		EnforcingConsecutiveGatewayFailure int    `json:"enforcing_consecutive_gateway_failure"`
		SuccessfulActiveHCUnejectHost      bool   `json:"successful_active_health_check_uneject_host"`
		EjectionsActive                    int64  `json:"ejections_active"`
	}
	jsonHealthCheck struct {
		Type               string `json:"type"`
		Path               string `json:"path,omitempty"`
		Host               string `json:"host,omitempty"`
		Interval           string `json:"interval"`
		NoTrafficInterval  string `json:"no_traffic_interval"`
		Timeout            string `json:"timeout"`
		UnhealthyThreshold uint32 `json:"unhealthy_threshold"`
		HealthyThreshold   uint32 `json:"healthy_threshold"`
	}
	jsonHostStatus struct {
		Address      jsonAddress      `json:"address"`
		Stats        []jsonMetric     `json:"stats"`
		HealthStatus jsonHealthStatus `json:"health_status"`
		Weight       uint32           `json:"weight"`
		Hostname     string           `json:"hostname,omitempty"`
	}
	jsonAddress struct {
		SocketAddress struct {
			Address   string `json:"address"`
			PortValue uint16 `json:"port_value"`
		} `json:"socket_address"`
	}
	jsonMetric struct {
		Name  string `json:"name"`
		Value string `json:"value"`
		Type  string `json:"type"`
	}
	jsonHealthStatus struct {
		FailedActiveHealthCheck bool   `json:"failed_active_health_check,omitempty"`
		FailedOutlierCheck      bool   `json:"failed_outlier_check,omitempty"`
		PendingActiveHC         bool   `json:"pending_active_hc,omitempty"`
		EDSHealthStatus         string `json:"eds_health_status"`
	}
)

// WriteClustersJSON writes the admin /clusters?format=json view: what
// WriteClusters shows, in Envoy's ClusterStatus JSON shape.
func (m *Manager) WriteClustersJSON(w io.Writer) error {
	out := jsonClusters{ClusterStatuses: make([]jsonCluster, 0, len(m.Clusters()))}
	for _, c := range m.Clusters() {
		jc := jsonCluster{Name: c.name, ObservabilityName: c.name, HostStatuses: []jsonHostStatus{}}
		th := map[string]any{"priority": "DEFAULT"}
		for _, r := range c.breakers() {
			th[r.name] = r.limit
		}
		jc.CircuitBreakers.Thresholds = []map[string]any{th}
		if od := c.cfg.OutlierDetection; od != nil {
			jc.OutlierDetection = &jsonOutlier{
				Consecutive5xx: od.Consecutive5xx, ConsecutiveGatewayFailure: od.ConsecutiveGatewayFailure,
				Interval: od.Interval.D().String(), BaseEjectionTime: od.BaseEjectionTime.D().String(),
				MaxEjectionTime: od.MaxEjectionTime.D().String(), MaxEjectionPercent: od.MaxEjectionPercent,
				EnforcingConsecutive5xx:            c.outlier.enforcing[ejectConsecutive5xx],
				EnforcingConsecutiveGatewayFailure: c.outlier.enforcing[ejectConsecutiveGateway],
				SuccessfulActiveHCUnejectHost:      c.outlier.hcUneject,
				EjectionsActive:                    c.stats.get(statOutlierEjectionsActive),
			}
		}
		if c.hc != nil {
			hc := c.hc.cfg
			jh := &jsonHealthCheck{Type: "tcp", Interval: hc.Interval.D().String(), NoTrafficInterval: hc.NoTrafficInterval.D().String(),
				Timeout: hc.Timeout.D().String(), UnhealthyThreshold: hc.UnhealthyThreshold, HealthyThreshold: hc.HealthyThreshold}
			if hc.HTTP != nil {
				jh.Type, jh.Path, jh.Host = "http", hc.HTTP.Path, hc.HTTP.Host
			}
			jc.HealthCheck = jh
		}
		for _, h := range c.Hosts() {
			hs := jsonHostStatus{Weight: h.weight, Hostname: h.hostname}
			if ap, err := netip.ParseAddrPort(h.addr); err == nil {
				hs.Address.SocketAddress.Address = ap.Addr().String()
				hs.Address.SocketAddress.PortValue = ap.Port()
			}
			for i, n := range hostStatNames {
				typ := "COUNTER"
				if hostStat(i) == hostCxActive || hostStat(i) == hostRqActive {
					typ = "GAUGE"
				}
				hs.Stats = append(hs.Stats, jsonMetric{Name: n, Value: strconv.FormatInt(h.stats[i].Load(), 10), Type: typ})
			}
			hs.HealthStatus = jsonHealthStatus{
				FailedActiveHealthCheck: h.hcFailed.Load(),
				FailedOutlierCheck:      h.ejected.Load(),
				PendingActiveHC:         h.hcPending.Load(),
				EDSHealthStatus:         "HEALTHY",
			}
			jc.HostStatuses = append(jc.HostStatuses, hs)
		}
		out.ClusterStatuses = append(out.ClusterStatuses, jc)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("upstream: writing clusters: %w", err)
	}
	return nil
}
