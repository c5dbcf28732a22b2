package upstream

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// LBContext carries what a load balancer may use from the request. It is
// passed by value in StreamOptions; the zero value means "no preference".
type LBContext struct {
	// HashKey is the request's hash (from a header, a cookie or the source
	// address, computed by the router) for hashing policies such as ring
	// hash or Maglev; meaningful only when HasHashKey is true.
	HashKey    uint64
	HasHashKey bool
}

// LoadBalancer picks a host for a request. It is built for one immutable
// host set (see LBFactory) and replaced with it, so it never sees a host
// list change under it. Pick is called concurrently and must be safe for
// concurrent use; it returns nil only when it has no host.
type LoadBalancer interface {
	Pick(c LBContext) *Host
}

// LBFactory builds a load balancer over hosts (never empty, never
// modified afterwards). Ring hash and Maglev fit this shape: they build
// their table here and look up LBContext.HashKey in Pick.
type LBFactory func(hosts []*Host) LoadBalancer

// lbFactories maps lb_policy names to their factories.
var lbFactories = map[string]LBFactory{
	LBRoundRobin:   newRoundRobin,
	LBLeastRequest: newLeastRequest,
	LBRandom:       newRandom,
	LBRingHash:     newRingHash,
	LBMaglev:       newMaglev,
}

// allEqualWeights reports whether every host has the same weight.
func allEqualWeights(hosts []*Host) bool {
	for _, h := range hosts[1:] {
		if h.weight != hosts[0].weight {
			return false
		}
	}
	return true
}

// roundRobin is nginx's smooth weighted round robin: every pick adds each
// host's weight to its current value, chooses the largest, and subtracts
// the total from it. The sequence is deterministic and spreads a heavy
// host's picks evenly (weights 5,1,1 give a a b a c a a, not a a a a a b c).
type roundRobin struct {
	mu      sync.Mutex
	hosts   []*Host
	current []int64
	total   int64
	equal   bool
	next    atomic.Uint64 // equal weights: plain rotation, lock-free
}

func newRoundRobin(hosts []*Host) LoadBalancer {
	rr := &roundRobin{hosts: hosts, current: make([]int64, len(hosts)), equal: allEqualWeights(hosts)}
	for _, h := range hosts {
		rr.total += int64(h.weight)
	}
	return rr
}

func (rr *roundRobin) Pick(LBContext) *Host {
	if rr.equal {
		return rr.hosts[(rr.next.Add(1)-1)%uint64(len(rr.hosts))]
	}
	rr.mu.Lock()
	best := 0
	for i, h := range rr.hosts {
		rr.current[i] += int64(h.weight)
		if rr.current[i] > rr.current[best] {
			best = i
		}
	}
	rr.current[best] -= rr.total
	h := rr.hosts[best]
	rr.mu.Unlock()
	return h
}

// weightedRandom picks a host with probability weight/total.
type weightedRandom struct {
	hosts []*Host
	cum   []uint64 // cumulative weights; nil when all weights are equal
	total uint64
}

func buildWeightedRandom(hosts []*Host) weightedRandom {
	wr := weightedRandom{hosts: hosts}
	if !allEqualWeights(hosts) {
		wr.cum = make([]uint64, len(hosts))
		for i, h := range hosts {
			wr.total += uint64(h.weight)
			wr.cum[i] = wr.total
		}
	}
	return wr
}

func (wr *weightedRandom) pickIndex() int {
	if wr.cum == nil {
		return rand.IntN(len(wr.hosts))
	}
	r := rand.Uint64N(wr.total)
	lo, hi := 0, len(wr.cum)-1
	for lo < hi { // first i with cum[i] > r
		m := int(uint(lo+hi) >> 1)
		if wr.cum[m] > r {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

type random struct{ wr weightedRandom }

func newRandom(hosts []*Host) LoadBalancer { return &random{wr: buildWeightedRandom(hosts)} }

func (r *random) Pick(LBContext) *Host { return r.wr.hosts[r.wr.pickIndex()] }

// leastRequest draws two hosts (weighted at random, distinct when there
// are at least two) and takes the one with fewer active requests per unit
// of weight: Envoy's power of two choices.
type leastRequest struct{ wr weightedRandom }

func newLeastRequest(hosts []*Host) LoadBalancer {
	return &leastRequest{wr: buildWeightedRandom(hosts)}
}

func (l *leastRequest) Pick(LBContext) *Host {
	hosts := l.wr.hosts
	if len(hosts) == 1 {
		return hosts[0]
	}
	i := l.wr.pickIndex()
	j := l.wr.pickIndex()
	if j == i { // draw again once among the others, uniformly
		j = rand.IntN(len(hosts) - 1)
		if j >= i {
			j++
		}
	}
	a, b := hosts[i], hosts[j]
	// Compare active/weight without division: a.active*b.w vs b.active*a.w.
	if a.rqActive.Load()*int64(b.weight) <= b.rqActive.Load()*int64(a.weight) {
		return a
	}
	return b
}
