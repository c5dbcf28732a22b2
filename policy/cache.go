package policy

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/attributes"
)

// decisionCache is the engine's server-side decision cache: an LRU of
// decisions keyed on the exact values of the attributes a cacheable
// policy references (the analysis' refs, the same ones a sidecar's check
// cache keys on). Two bags equal on those attributes get the same
// decision from the same compiled policy and data, so a hit returns the
// stored decision (with a fresh ID) without evaluating. A cache belongs
// to one compiled policy: a reload starts with an empty one.
//
// Entries live for min(ttl, the decision's valid_duration) and serve at
// most valid_use_count hits; decisions that are not cacheable (policy or
// decision says so, zero validity) are never stored. It is safe for
// concurrent use: the keys are spread over shards, each an LRU under its
// own mutex.
type decisionCache struct {
	refs     []attrRef
	ttl      time.Duration
	perShard int
	seed     maphash.Seed
	n        atomic.Int64 // entries over all shards
	metrics  *metrics
	shards   [cacheShards]cacheShard
}

// cacheShards spreads the cache's lock contention; max_entries is rounded
// up to a multiple of it.
const cacheShards = 16

type cacheShard struct {
	mu      sync.Mutex
	entries map[string]*cacheEntry
	head    cacheEntry // sentinel of the LRU ring: head.next is the most recent
}

type cacheEntry struct {
	key        string
	d          *Decision
	expires    time.Time
	usesLeft   int32
	prev, next *cacheEntry
}

// newDecisionCache returns a cache for a policy referencing refs, bounded
// to about maxEntries entries.
func newDecisionCache(refs []attrRef, maxEntries int, ttl time.Duration, m *metrics) *decisionCache {
	c := &decisionCache{
		refs:     refs,
		ttl:      ttl,
		perShard: (maxEntries + cacheShards - 1) / cacheShards,
		seed:     maphash.MakeSeed(),
		metrics:  m,
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = make(map[string]*cacheEntry)
		s.head.next, s.head.prev = &s.head, &s.head
	}
	return c
}

// appendKey appends the cache key of bag: for each reference, its value
// (Value.AppendKey, which also encodes absence as the invalid kind) or,
// for a map key, a presence byte and the key's value.
func (c *decisionCache) appendKey(dst []byte, bag attributes.Bag) []byte {
	for _, r := range c.refs {
		v, ok := bag.Get(r.name)
		if !r.keyed {
			dst = v.AppendKey(dst)
			continue
		}
		var s string
		if ok && v.Kind() == attributes.KindStringMap {
			s, ok = v.StringMapValue().Get(r.key)
		} else {
			ok = false
		}
		if !ok {
			dst = append(dst, 0)
			continue
		}
		dst = append(dst, 1)
		dst = attributes.String(s).AppendKey(dst)
	}
	return dst
}

func (c *decisionCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the decision stored under key and still valid at now,
// counting one use of it; nil on a miss.
func (c *decisionCache) get(key []byte, now time.Time) *Decision {
	s := c.shard(key)
	s.mu.Lock()
	e := s.entries[string(key)]
	if e == nil {
		s.mu.Unlock()
		c.metrics.cacheMiss.Inc()
		return nil
	}
	if !now.Before(e.expires) {
		c.remove(s, e)
		s.mu.Unlock()
		c.metrics.cacheExpired.Inc()
		c.metrics.cacheMiss.Inc()
		return nil
	}
	d := e.d
	e.usesLeft--
	if e.usesLeft <= 0 {
		c.remove(s, e) // its last use
		c.metrics.cacheUsedUp.Inc()
	} else {
		s.moveToFront(e)
	}
	s.mu.Unlock()
	c.metrics.cacheHit.Inc()
	return d
}

// put stores d under key when d may be cached, evicting the least recently
// used entries of the shard beyond its bound.
func (c *decisionCache) put(key []byte, d *Decision, now time.Time) {
	if !d.Cacheable || d.ValidDuration <= 0 || d.ValidUseCount <= 0 {
		return
	}
	ttl := min(c.ttl, d.ValidDuration)
	if d.memo == nil {
		d.memo = new(memo) // before Eval returns d: d is still the engine's
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.entries[string(key)]; old != nil {
		c.remove(s, old)
	}
	e := &cacheEntry{key: string(key), d: d, expires: now.Add(ttl), usesLeft: d.ValidUseCount}
	s.entries[e.key] = e
	s.moveToFront(e)
	c.n.Add(1)
	for len(s.entries) > c.perShard {
		c.remove(s, s.head.prev)
		c.metrics.cacheEvicted.Inc()
	}
}

// remove unlinks e; the shard is locked.
func (c *decisionCache) remove(s *cacheShard, e *cacheEntry) {
	delete(s.entries, e.key)
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
		e.prev, e.next = nil, nil
	}
	c.n.Add(-1)
}

// moveToFront makes e the most recent entry; the shard is locked.
func (s *cacheShard) moveToFront(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.prev, e.next = &s.head, s.head.next
	s.head.next.prev = e
	s.head.next = e
}

// len is the number of entries.
func (c *decisionCache) len() int { return int(c.n.Load()) }
