package upstream

import "sync/atomic"

// resource is one circuit breaker: a counter with a limit, lock-free.
type resource struct {
	name  string
	limit int64
	cur   atomic.Int64
}

// tryAcquire takes one unit, or reports false when the limit is reached.
func (r *resource) tryAcquire() bool {
	if r.cur.Add(1) > r.limit {
		r.cur.Add(-1)
		return false
	}
	return true
}

// forceAcquire takes one unit even above the limit (a pool's first
// connection is always allowed, as in Envoy, so that a host can never be
// starved by its siblings' connections).
func (r *resource) forceAcquire() { r.cur.Add(1) }

func (r *resource) release() { r.cur.Add(-1) }

// open reports whether the breaker is at its limit (Envoy's
// circuit_breakers.default.*_open gauges).
func (r *resource) open() bool { return r.cur.Load() >= r.limit }

// TryAcquireRetry takes one unit of the cluster's max_retries budget for a
// retry the router is about to make. It returns false when the budget is
// exhausted (the router then gives up, flag URX, and the retry overflow
// stat counts it). Every true result must be matched by one ReleaseRetry
// when the retried request finishes.
func (c *Cluster) TryAcquireRetry() bool {
	if !c.retryRB.tryAcquire() {
		c.stats.inc(statRqRetryOverflow)
		return false
	}
	c.stats.inc(statRqRetry)
	return true
}

// ReleaseRetry returns a unit taken by TryAcquireRetry.
func (c *Cluster) ReleaseRetry() { c.retryRB.release() }

func (c *Cluster) breakers() [4]*resource {
	return [4]*resource{&c.cxRB, &c.pendingRB, &c.rqRB, &c.retryRB}
}
