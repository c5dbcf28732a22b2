package client

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// maxRefSets bounds how many distinct shapes of referenced attributes the
// cache tracks; a policy has few (one per rule shape). Beyond it the least
// recently added shape is forgotten and its entries age out of the LRU.
const maxRefSets = 64

// refMatch is one referenced attribute: the value (or map entry) a cached
// decision depends on and how.
type refMatch struct {
	name   string
	mapKey string
	hasKey bool
	cond   mixerv1.ReferencedAttributes_Condition
	re     *regexp.Regexp // REGEX only
}

// refSet is the set of attributes one decision referenced. Requests whose
// values agree on every match share the decision.
type refSet struct {
	id      uint32
	sig     string // canonical text of matches, to share equal sets
	matches []refMatch
}

// key appends the cache key of bag under r to dst. It returns false when
// the bag cannot match r at all (an attribute r requires absent is present,
// or one it requires present is absent).
func (r *refSet) key(dst []byte, bag attributes.Bag) ([]byte, bool) {
	dst = binary.LittleEndian.AppendUint32(dst, r.id)
	for i := range r.matches {
		m := &r.matches[i]
		v, ok := bag.Get(m.name)
		var s string
		if m.hasKey {
			if ok && v.Kind() == attributes.KindStringMap {
				s, ok = v.StringMapValue().Get(m.mapKey)
			} else {
				ok = false
			}
		}
		switch m.cond {
		case mixerv1.ReferencedAttributes_ABSENCE:
			if ok {
				return dst, false
			}
		case mixerv1.ReferencedAttributes_REGEX:
			// The decision depended on whether the value matches: the
			// key records the outcome, not the value, so every value
			// with the same outcome hits.
			switch {
			case !ok:
				dst = append(dst, 2)
			case m.hasKey && m.re.MatchString(s), !m.hasKey && v.Kind() == attributes.KindString && m.re.MatchString(v.StringValue()):
				dst = append(dst, 1)
			case !m.hasKey && v.Kind() != attributes.KindString:
				dst = v.AppendKey(append(dst, 3)) // a regex on a non-string: fall back to the exact value
			default:
				dst = append(dst, 0)
			}
		default: // EXACT
			if !ok {
				return dst, false
			}
			if m.hasKey {
				dst = binary.AppendUvarint(dst, uint64(len(s)))
				dst = append(dst, s...)
			} else {
				dst = v.AppendKey(dst)
			}
		}
	}
	return dst, true
}

// newRefSet decodes the server's referenced attributes for a request that
// was sent with globalWordCount global words.
func newRefSet(ra *mixerv1.ReferencedAttributes, globalWordCount uint32) (*refSet, error) {
	dec, err := attributes.NewWordDecoder(globalWordCount, ra.GetWords())
	if err != nil {
		return nil, err
	}
	r := &refSet{matches: make([]refMatch, 0, len(ra.GetAttributeMatches()))}
	for i, am := range ra.GetAttributeMatches() {
		name, err := dec.Word(am.GetName())
		if err != nil {
			return nil, fmt.Errorf("mixer client: referenced attribute %d: name: %w", i, err)
		}
		m := refMatch{name: name, cond: am.GetCondition()}
		if am.GetMapKey() != 0 {
			// Index 0 is a global word (source.ip), never a map key,
			// so the proto's zero value safely means "no key".
			if m.mapKey, err = dec.Word(am.GetMapKey()); err != nil {
				return nil, fmt.Errorf("mixer client: referenced attribute %q: map key: %w", name, err)
			}
			m.hasKey = true
		}
		switch m.cond {
		case mixerv1.ReferencedAttributes_ABSENCE, mixerv1.ReferencedAttributes_EXACT:
		case mixerv1.ReferencedAttributes_REGEX:
			if m.re, err = regexp.Compile(am.GetRegex()); err != nil {
				return nil, fmt.Errorf("mixer client: referenced attribute %q: regex: %w", name, err)
			}
		default:
			return nil, fmt.Errorf("mixer client: referenced attribute %q: unknown condition %d", name, m.cond)
		}
		r.matches = append(r.matches, m)
	}
	slices.SortFunc(r.matches, func(a, b refMatch) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.mapKey, b.mapKey)
	})
	var sb strings.Builder
	for _, m := range r.matches {
		fmt.Fprintf(&sb, "%q/%t/%q/%d/%q;", m.name, m.hasKey, m.mapKey, m.cond, m.GetRegex())
	}
	r.sig = sb.String()
	return r, nil
}

// GetRegex returns the regex source of a REGEX match.
func (m *refMatch) GetRegex() string {
	if m.re == nil {
		return ""
	}
	return m.re.String()
}

// cacheEntry is one cached decision, linked into the LRU list.
type cacheEntry struct {
	key        string
	result     Result
	expires    time.Time
	usesLeft   int32
	prev, next *cacheEntry
}

// checkCache holds decisions keyed by the values of their referenced
// attributes. It is safe for concurrent use.
type checkCache struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	nextID  uint32
	refSets []*refSet // most recently added last
	entries map[string]*cacheEntry
	head    cacheEntry // sentinel: head.next is the most recently used
	keyPool sync.Pool
	m       *metrics
	// flights are the server calls under way for a key: a request that
	// misses while another one is asking about the same referenced
	// values waits for that answer instead of asking again, so that an
	// expiring entry of a busy key costs one call, not one per
	// concurrent request.
	flights map[string]*flight
}

// flight is one server call that concurrent misses of its key wait for.
type flight struct {
	key  string
	done chan struct{} // closed when the call's answer is in the cache, or failed
}

func newCheckCache(max int, now func() time.Time, m *metrics) *checkCache {
	c := &checkCache{
		max:     max,
		now:     now,
		entries: make(map[string]*cacheEntry, min(max, 1024)),
		m:       m,
		flights: map[string]*flight{},
	}
	c.head.next, c.head.prev = &c.head, &c.head
	c.keyPool.New = func() any { b := make([]byte, 0, 512); return &b }
	return c
}

// lookup returns a cached result for bag. A hit uses one of the entry's
// remaining uses. On a miss whose key an earlier decision defined (the
// values of its referenced attributes), lookup also returns the key's
// flight: lead is true when the caller is the first to miss and must ask
// the server and then call land; otherwise the caller may wait for the
// flight's done and peek. A miss no earlier decision keys returns no
// flight.
func (c *checkCache) lookup(bag attributes.Bag) (r Result, hit bool, f *flight, lead bool) {
	bp := c.keyPool.Get().(*[]byte)
	defer c.keyPool.Put(bp)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, missKey := c.findLocked(bag, bp, true)
	if e != nil {
		c.m.cacheHits.Inc()
		return c.useLocked(e), true, nil, false
	}
	c.m.cacheMisses.Inc()
	if missKey == nil {
		return Result{}, false, nil, false
	}
	if f := c.flights[string(missKey)]; f != nil {
		c.m.cacheCoalesced.Inc()
		return Result{}, false, f, false
	}
	f = &flight{key: string(missKey), done: make(chan struct{})}
	c.flights[f.key] = f
	return Result{}, false, f, true
}

// peek is lookup for a caller that waited for a flight: a hit uses one of
// the entry's uses; nothing is counted (its lookup was).
func (c *checkCache) peek(bag attributes.Bag) (Result, bool) {
	bp := c.keyPool.Get().(*[]byte)
	defer c.keyPool.Put(bp)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, _ := c.findLocked(bag, bp, false); e != nil {
		return c.useLocked(e), true
	}
	return Result{}, false
}

// findLocked returns the live entry for bag, dropping expired ones on the
// way, or, when there is none and wantMiss is set, a copy of the first
// key an earlier decision defines for bag (nil when none does). bp is
// scratch space for keys.
func (c *checkCache) findLocked(bag attributes.Bag, bp *[]byte, wantMiss bool) (*cacheEntry, []byte) {
	now := c.now()
	var missKey []byte
	for i := len(c.refSets) - 1; i >= 0; i-- {
		key, ok := c.refSets[i].key((*bp)[:0], bag)
		*bp = key[:0]
		if !ok {
			continue
		}
		e := c.entries[string(key)]
		if e != nil && now.Before(e.expires) {
			return e, nil
		}
		if e != nil {
			c.remove(e)
		}
		if wantMiss && missKey == nil {
			missKey = append(make([]byte, 0, len(key)), key...)
		}
	}
	return nil, missKey
}

// useLocked takes one use of e and returns its result.
func (c *checkCache) useLocked(e *cacheEntry) Result {
	e.usesLeft--
	if e.usesLeft <= 0 {
		c.remove(e)
	} else {
		c.moveToFront(e)
	}
	return e.result
}

// land ends a flight its leader started: whatever the server answered is
// in the cache (or nothing is, when the call failed), and its waiters look
// again.
func (c *checkCache) land(f *flight) {
	c.mu.Lock()
	delete(c.flights, f.key)
	c.mu.Unlock()
	close(f.done)
}

func (c *checkCache) insert(bag attributes.Bag, ra *mixerv1.ReferencedAttributes, globalWordCount uint32, result Result, validFor time.Duration, uses int32) error {
	if validFor <= 0 || uses <= 0 || ra == nil {
		return nil
	}
	r, err := newRefSet(ra, globalWordCount)
	if err != nil {
		return err
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	r = c.internRefSet(r)
	key, ok := r.key(nil, bag)
	if !ok {
		return fmt.Errorf("mixer client: referenced attributes do not describe the request (presence differs)")
	}
	if e := c.entries[string(key)]; e != nil {
		c.remove(e)
	}
	e := &cacheEntry{key: string(key), result: result, expires: now.Add(validFor), usesLeft: uses}
	e.result.CacheHit = true
	c.entries[e.key] = e
	c.m.cacheEntries.Inc()
	c.moveToFront(e)
	for len(c.entries) > c.max {
		c.remove(c.head.prev)
		c.m.cacheEvictions.Inc()
	}
	return nil
}

// internRefSet returns the tracked set equal to r, or tracks r.
func (c *checkCache) internRefSet(r *refSet) *refSet {
	for i, have := range c.refSets {
		if have.sig == r.sig {
			// Most recently used last: lookups try it first.
			c.refSets = append(append(c.refSets[:i:i], c.refSets[i+1:]...), have)
			return have
		}
	}
	c.nextID++
	r.id = c.nextID
	if len(c.refSets) == maxRefSets {
		c.refSets = c.refSets[1:]
	}
	c.refSets = append(c.refSets, r)
	return r
}

func (c *checkCache) moveToFront(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next, e.next.prev = e.next, e.prev
	}
	e.next, e.prev = c.head.next, &c.head
	c.head.next.prev = e
	c.head.next = e
}

func (c *checkCache) remove(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(c.entries, e.key)
	c.m.cacheEntries.Dec()
}
