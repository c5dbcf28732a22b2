package upstream

import (
	"fmt"
	"io"
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
	for _, c := range m.ordered {
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
