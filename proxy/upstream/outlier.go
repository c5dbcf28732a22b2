package upstream

import (
	"slices"
	"time"

	"go.uber.org/zap"
)

// maxEjectionTime caps an ejection (Envoy's max_ejection_time default),
// unless base_ejection_time is longer.
const maxEjectionTime = 300 * time.Second

// outlierDetector holds a cluster's outlier-detection settings; nil when
// the cluster has none.
type outlierDetector struct {
	consecutive5xx int32
	interval       time.Duration
	baseEjection   time.Duration
	maxPercent     int
}

func newOutlierDetector(cfg *OutlierDetectionConfig) *outlierDetector {
	if cfg == nil {
		return nil
	}
	return &outlierDetector{
		consecutive5xx: int32(cfg.Consecutive5xx),
		interval:       cfg.Interval.D(),
		baseEjection:   cfg.BaseEjectionTime.D(),
		maxPercent:     int(cfg.MaxEjectionPercent),
	}
}

// recordResponse counts a final response status by class and feeds it to
// outlier detection.
func (h *Host) recordResponse(status int) {
	if class := status / 100; class >= 1 && class <= 5 {
		h.cluster.rqClass[class-1].Add(1)
	}
	h.recordResult(status >= 500)
}

// recordResult feeds one request's outcome to outlier detection: failed
// is a 5xx response, a connection failure or a reset before the response.
// A success costs one atomic load.
func (h *Host) recordResult(failed bool) {
	c := h.cluster
	if c.outlier == nil {
		return
	}
	if !failed {
		if h.consecutive5xx.Load() != 0 {
			h.consecutive5xx.Store(0)
		}
		return
	}
	if h.consecutive5xx.Add(1) == c.outlier.consecutive5xx {
		c.eject(h)
	}
}

// eject takes h out of load balancing, within max_ejection_percent.
func (c *Cluster) eject(h *Host) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hosts := c.Hosts()
	if c.closed || h.ejected.Load() || !slices.Contains(hosts, h) {
		return
	}
	ejected := 0
	for _, x := range hosts {
		if x.ejected.Load() {
			ejected++
		}
	}
	// Envoy's rule: within the percentage, but one host always may go.
	if ejected > 0 && (ejected+1)*100 > len(hosts)*c.outlier.maxPercent {
		c.stats.inc(statOutlierEjectionsOverflow)
		return
	}
	h.ejections++
	d := c.outlier.baseEjection * time.Duration(h.ejections)
	if limit := max(maxEjectionTime, c.outlier.baseEjection); d > limit {
		d = limit
	}
	h.ejectedUntil = time.Now().Add(d)
	h.ejected.Store(true)
	h.consecutive5xx.Store(0)
	c.rebuildLocked(hosts)
	// Counted once the new host set is in place, so that a reader who
	// sees the stat also sees the ejection take effect.
	c.stats.inc(statOutlierEjectionsTotal)
	c.stats.inc(statOutlierEjectionsActive)
	c.log.Debug("host ejected", zapHost(h), zap.Duration("for", d))
}

// unejectExpired returns hosts whose ejection time is over (every
// outlier_detection.interval).
func (c *Cluster) unejectExpired(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hosts := c.Hosts()
	returned := 0
	for _, h := range hosts {
		if h.ejected.Load() && !now.Before(h.ejectedUntil) {
			h.ejected.Store(false)
			returned++
			c.log.Debug("host returned", zapHost(h))
		}
	}
	if returned > 0 {
		c.rebuildLocked(hosts)
		c.stats[statOutlierEjectionsActive].Add(-int64(returned))
	}
}

// rebuildLocked installs a host set over hosts with a load balancer over
// the ones not ejected, or over all of them when fewer than half are left
// (panic mode, as Envoy's default healthy_panic_threshold of 50%).
func (c *Cluster) rebuildLocked(hosts []*Host) {
	hs := &hostSet{hosts: hosts}
	healthy := hosts
	if c.outlier != nil {
		healthy = make([]*Host, 0, len(hosts))
		for _, h := range hosts {
			if !h.ejected.Load() {
				healthy = append(healthy, h)
			}
		}
		if len(healthy)*2 < len(hosts) {
			healthy = hosts
		}
	}
	if len(healthy) > 0 {
		hs.lb = c.lbFactory(healthy)
	}
	c.hosts.Store(hs)
}
