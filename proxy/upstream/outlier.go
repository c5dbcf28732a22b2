package upstream

import (
	"math/rand/v2"
	"slices"
	"time"

	"go.uber.org/zap"
)

// outcome is one request's result as outlier detection sees it.
type outcome uint8

const (
	outcomeSuccess outcome = iota
	// outcome5xx is a 5xx response other than a gateway failure (500, 501 ...).
	outcome5xx
	// outcomeGatewayFailure is a 502, 503 or 504 response, or a local
	// failure: a failed connection or TLS handshake, a reset or malformed
	// response before the headers, a response timeout.
	outcomeGatewayFailure
)

// ejectionType is why a host was ejected.
type ejectionType uint8

const (
	ejectConsecutive5xx ejectionType = iota
	ejectConsecutiveGateway
)

// outlierDetector holds a cluster's outlier-detection settings; nil when
// the cluster has none.
type outlierDetector struct {
	consecutive5xx     int32
	consecutiveGateway int32
	interval           time.Duration
	baseEjection       time.Duration
	maxEjection        time.Duration
	maxPercent         int
	enforcing          [2]int // by ejectionType, percent
	hcUneject          bool   // a passing active health check returns an ejected host
}

func newOutlierDetector(cfg *OutlierDetectionConfig) *outlierDetector {
	if cfg == nil {
		return nil
	}
	od := &outlierDetector{
		consecutive5xx:     int32(cfg.Consecutive5xx),
		consecutiveGateway: int32(cfg.ConsecutiveGatewayFailure),
		interval:           cfg.Interval.D(),
		baseEjection:       cfg.BaseEjectionTime.D(),
		maxEjection:        cfg.MaxEjectionTime.D(),
		maxPercent:         int(cfg.MaxEjectionPercent),
		enforcing:          [2]int{DefaultEnforcingConsecutive5xx, DefaultEnforcingConsecutiveGateway},
		hcUneject:          cfg.SuccessfulActiveHealthCheckUnejectHost == nil || *cfg.SuccessfulActiveHealthCheckUnejectHost,
	}
	if p := cfg.EnforcingConsecutive5xx; p != nil {
		od.enforcing[ejectConsecutive5xx] = int(*p)
	}
	if p := cfg.EnforcingConsecutiveGatewayFailure; p != nil {
		od.enforcing[ejectConsecutiveGateway] = int(*p)
	}
	return od
}

// ejectionTime is how long the n-th ejection of a host lasts: base × n,
// capped at max_ejection_time.
func (od *outlierDetector) ejectionTime(n int) time.Duration {
	d := od.baseEjection * time.Duration(n)
	if d > od.maxEjection || d < 0 {
		d = od.maxEjection
	}
	return d
}

// recordResponse counts a final response status by class and feeds it to
// outlier detection.
func (h *Host) recordResponse(status int) {
	if class := status / 100; class >= 1 && class <= 5 {
		h.cluster.rqClass[class-1].Add(1)
	}
	switch {
	case status < 500:
		h.recordResult(outcomeSuccess)
	case status == 502 || status == 503 || status == 504:
		h.recordResult(outcomeGatewayFailure)
	default:
		h.recordResult(outcome5xx)
	}
}

// recordLocalFailure feeds a failure without a response (connection
// failure, reset, timeout) to outlier detection: Envoy maps these to a 5xx
// that is also a gateway failure.
func (h *Host) recordLocalFailure() { h.recordResult(outcomeGatewayFailure) }

// recordResult feeds one request's outcome to outlier detection. A
// success costs two atomic loads.
func (h *Host) recordResult(o outcome) {
	od := h.cluster.outlier
	if od == nil {
		return
	}
	switch o {
	case outcomeSuccess:
		if h.consecutive5xx.Load() != 0 {
			h.consecutive5xx.Store(0)
		}
		if h.consecutiveGateway.Load() != 0 {
			h.consecutiveGateway.Store(0)
		}
	case outcome5xx:
		if h.consecutiveGateway.Load() != 0 {
			h.consecutiveGateway.Store(0)
		}
		if h.consecutive5xx.Add(1) == od.consecutive5xx {
			h.cluster.detected(h, ejectConsecutive5xx)
		}
	case outcomeGatewayFailure:
		// Gateway failures are checked first, as in Envoy, so that when
		// both thresholds are reached at once the ejection is counted as
		// a gateway failure.
		g := h.consecutiveGateway.Add(1)
		n := h.consecutive5xx.Add(1)
		if g == od.consecutiveGateway {
			h.cluster.detected(h, ejectConsecutiveGateway)
		}
		if n == od.consecutive5xx {
			h.cluster.detected(h, ejectConsecutive5xx)
		}
	}
}

// detected counts an outlier detection and ejects the host when the
// enforcing percentage allows it.
func (c *Cluster) detected(h *Host, typ ejectionType) {
	if typ == ejectConsecutiveGateway {
		c.stats.inc(statOutlierDetectedGateway)
	} else {
		c.stats.inc(statOutlierDetected5xx)
	}
	if p := c.outlier.enforcing[typ]; p < 100 && (p == 0 || rand.IntN(100) >= p) {
		return
	}
	c.eject(h, typ)
}

// eject takes h out of load balancing, within max_ejection_percent.
func (c *Cluster) eject(h *Host, typ ejectionType) {
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
	d := c.outlier.ejectionTime(h.ejections)
	h.ejectedUntil = c.now().Add(d)
	h.ejected.Store(true)
	h.consecutive5xx.Store(0)
	h.consecutiveGateway.Store(0)
	c.rebuildLocked(hosts)
	// Counted once the new host set is in place, so that a reader who
	// sees the stat also sees the ejection take effect.
	c.stats.inc(statOutlierEnforcedTotal)
	if typ == ejectConsecutiveGateway {
		c.stats.inc(statOutlierEnforcedGateway)
	} else {
		c.stats.inc(statOutlierEnforced5xx)
	}
	c.stats.inc(statOutlierEjectionsActive)
	c.log.Debug("host ejected", zapHost(h), zap.Duration("for", d), zap.Int("ejections", h.ejections))
}

// unejectExpired returns hosts whose ejection time is over; it runs every
// outlier_detection.interval.
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
	c.odSweeps.Add(1)
}

// rebuildLocked installs a host set over hosts with a load balancer over
// the healthy ones (neither ejected nor failing active health checks), or
// over all of them when fewer than half are healthy (panic mode, Envoy's
// default healthy_panic_threshold of 50%; requests then count
// lb_healthy_panic). c.mu is held, or the cluster is being built.
func (c *Cluster) rebuildLocked(hosts []*Host) {
	hs := &hostSet{hosts: hosts}
	healthy := hosts
	n := len(hosts)
	if c.outlier != nil || c.hc != nil {
		healthy = make([]*Host, 0, len(hosts))
		for _, h := range hosts {
			if h.Healthy() {
				healthy = append(healthy, h)
			}
		}
		n = len(healthy)
		if len(healthy)*2 < len(hosts) {
			healthy = hosts
			hs.panic = true
		}
	}
	if len(healthy) > 0 {
		hs.lb = c.lbFactory(healthy)
	}
	c.hosts.Store(hs)
	// Set once the host set is in place, so that a reader who sees the
	// count also sees the load balancer that goes with it.
	c.stats.set(statMembershipHealthy, int64(n))
}
