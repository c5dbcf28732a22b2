package upstream

import (
	"slices"
	"strconv"
)

// Consistent-hashing load balancers: the same LBContext.HashKey goes to the
// same host while the host set is unchanged, and a host joining or leaving
// moves only about its share of keys. Without a hash key (the route has no
// hash policy) a host is picked at random by weight, as Envoy does.

// hashString is FNV-1a 64 with a splitmix64 finaliser: deterministic across
// processes (so every sidecar maps a key to the same host) and well mixed.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Ring sizes, as Envoy's ring_hash_lb_config defaults.
const (
	minRingSize     = 1024
	maxRingSize     = 8 << 20
	pointsPerWeight = 160
)

type ringEntry struct {
	hash uint64
	host *Host
}

// ringHash is Ketama-style consistent hashing: every host owns points on
// a ring of at least minRingSize entries in proportion to its weight; a key
// goes to the first point at or after its hash.
type ringHash struct {
	ring     []ringEntry
	fallback weightedRandom
}

func newRingHash(hosts []*Host) LoadBalancer {
	var total uint64
	for _, h := range hosts {
		total += uint64(h.weight)
	}
	// A fixed number of points per unit of weight (Ketama's 160), so that a
	// host joining or leaving does not move the others' points; more for
	// small clusters, so the ring has at least minRingSize entries.
	perUnit := uint64(pointsPerWeight)
	if perUnit*total < minRingSize {
		perUnit = (minRingSize + total - 1) / total
	}
	if perUnit*total > maxRingSize {
		perUnit = max(1, maxRingSize/total)
	}
	rh := &ringHash{ring: make([]ringEntry, 0, perUnit*total), fallback: buildWeightedRandom(hosts)}
	buf := make([]byte, 0, 64)
	for _, h := range hosts {
		n := perUnit * uint64(h.weight)
		for i := uint64(0); i < n; i++ {
			buf = append(append(buf[:0], h.addr...), '_')
			buf = strconv.AppendUint(buf, i, 10)
			rh.ring = append(rh.ring, ringEntry{hashString(string(buf)), h})
		}
	}
	slices.SortFunc(rh.ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	return rh
}

func (rh *ringHash) Pick(c LBContext) *Host {
	if !c.HasHashKey {
		return rh.fallback.hosts[rh.fallback.pickIndex()]
	}
	key := mix64(c.HashKey)
	lo, hi := 0, len(rh.ring) // first entry with hash >= key
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rh.ring[m].hash < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i := lo
	if i == len(rh.ring) {
		i = 0
	}
	return rh.ring[i].host
}

// maglevTableSize is Envoy's default Maglev table size (a prime).
const maglevTableSize = 65537

// maglev is Google's Maglev hashing: a lookup table filled from each
// host's pseudo-random permutation, in proportion to the weights; a pick
// is one table lookup.
type maglev struct {
	table    []*Host
	fallback weightedRandom
}

func newMaglev(hosts []*Host) LoadBalancer {
	const m = maglevTableSize
	n := len(hosts)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	credit := make([]uint64, n)
	var maxW uint64
	for i, h := range hosts {
		offset[i] = hashString(h.addr) % m
		skip[i] = hashString(h.addr+"#skip")%(m-1) + 1
		maxW = max(maxW, uint64(h.weight))
	}
	table := make([]*Host, m)
	filled := 0
	for filled < m {
		for i, h := range hosts {
			// A host places an entry each time its credit reaches the
			// heaviest weight, so entries follow the weights.
			credit[i] += uint64(h.weight)
			if credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			for {
				c := (offset[i] + next[i]*skip[i]) % m
				next[i]++
				if table[c] == nil {
					table[c] = h
					filled++
					break
				}
			}
			if filled == m {
				break
			}
		}
	}
	return &maglev{table: table, fallback: buildWeightedRandom(hosts)}
}

func (mg *maglev) Pick(c LBContext) *Host {
	if !c.HasHashKey {
		return mg.fallback.hosts[mg.fallback.pickIndex()]
	}
	return mg.table[mix64(c.HashKey)%maglevTableSize]
}
