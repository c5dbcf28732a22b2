package telemetry

import (
	"hash/maphash"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// kind is a metric's Prometheus type.
type kind uint8

const (
	kindCounter kind = iota
	kindHistogram
	kindGauge
)

// labelSep ends every label value in a series key. It cannot occur in
// valid UTF-8, and label values are made valid UTF-8 before they are
// appended, so a key splits back into its values unambiguously.
const labelSep = 0xff

// series is one label combination of a metric. Its fields are updated with
// atomic operations by concurrent writers.
type series struct {
	key    string   // label values, each followed by labelSep
	values []string // the label values, split from key once
	next   *series  // next series with the same hash
	seen   atomic.Int64
	value  atomic.Uint64 // counter or gauge value, float64 bits
	sum    atomic.Uint64 // histogram sum, float64 bits
	counts []atomic.Uint64
}

func addFloat(u *atomic.Uint64, v float64) {
	for {
		old := u.Load()
		if u.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// metric is one exported metric and its series.
type metric struct {
	desc    *prometheus.Desc
	name    string
	kind    kind
	buckets []float64 // histogram upper bounds, without +Inf
	labels  *labelSet
	value   valueFunc

	limit int
	seed  maphash.Seed

	// series maps a hash of the label values to a chain of series. Reads
	// are lock-free; mu serialises inserts and deletes. A published
	// series' next pointer never changes, so readers may walk a chain
	// while a writer replaces its head.
	series sync.Map // uint64 -> *series
	mu     sync.Mutex
	n      atomic.Int64 // number of series; changed under mu, read anywhere

	overflow atomic.Uint64
	expired  atomic.Uint64
}

func newMetric(name, help string, k kind, buckets []float64, labels *labelSet, value valueFunc, limit int, seed maphash.Seed) *metric {
	return &metric{
		desc:    prometheus.NewDesc(name, help, labels.names, nil),
		name:    name,
		kind:    k,
		buckets: buckets,
		labels:  labels,
		value:   valueFunc{one: value.one, hasDef: value.hasDef, refs: slices.Clone(value.refs)},
		limit:   limit,
		seed:    seed,
	}
}

// find returns the series for key, whose hash is h (maphash.Bytes with
// m.seed), creating it if the limit allows; nil means the series limit was
// reached.
func (m *metric) find(key []byte, h uint64, now int64) *series {
	var head *series
	if v, ok := m.series.Load(h); ok {
		head = v.(*series)
	}
	for s := head; s != nil; s = s.next {
		if s.key == string(key) {
			return s
		}
	}
	if m.n.Load() >= int64(m.limit) {
		return nil // full: do not contend for mu on every overflowing record
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	head = nil
	if v, ok := m.series.Load(h); ok {
		head = v.(*series)
	}
	var s *series
	for s = head; s != nil; s = s.next {
		if s.key == string(key) {
			return s
		}
	}
	if m.n.Load() >= int64(m.limit) {
		return nil
	}
	k := string(key)
	s = &series{key: k, values: splitKey(k, len(m.labels.names)), next: head}
	s.seen.Store(now)
	if m.kind == kindHistogram {
		s.counts = make([]atomic.Uint64, len(m.buckets)+1)
	}
	m.series.Store(h, s)
	m.n.Add(1)
	return s
}

func splitKey(k string, n int) []string {
	values := make([]string, 0, n)
	for len(k) > 0 {
		i := strings.IndexByte(k, labelSep)
		values = append(values, k[:i])
		k = k[i+1:]
	}
	return values
}

// cacheWays is the size of a metric's seriesCache.
const cacheWays = 16

// seriesCache remembers, for one metric, the series a batch of records
// observed last, by hash, so that records repeating a label combination
// skip the map. It lives for one batch: a series observed in the batch
// was updated now and cannot expire before the batch ends.
type seriesCache [cacheWays]struct {
	h uint64
	s *series
}

// observeIn records v in the series for key, whose hash is h, looking
// the series up in c first (nil: no cache).
func (m *metric) observeIn(c *seriesCache, key []byte, h uint64, v float64, now int64) {
	if math.IsNaN(v) || (m.kind == kindCounter && v < 0) {
		return
	}
	var s *series
	if c != nil {
		if e := &c[h%cacheWays]; e.h == h && e.s != nil && e.s.key == string(key) {
			s = e.s
		}
	}
	if s == nil {
		if s = m.find(key, h, now); s != nil && c != nil {
			c[h%cacheWays].h, c[h%cacheWays].s = h, s
		}
	}
	if s == nil {
		m.overflow.Add(1)
		return
	}
	if s.seen.Load() != now {
		s.seen.Store(now)
	}
	switch m.kind {
	case kindCounter:
		addFloat(&s.value, v)
	case kindGauge:
		s.value.Store(math.Float64bits(v))
	case kindHistogram:
		i := sort.SearchFloat64s(m.buckets, v) // first bound >= v
		s.counts[i].Add(1)
		addFloat(&s.sum, v)
	}
}

// expire removes series not updated since before cutoff. A chain of
// series sharing one hash (a 64-bit collision) is removed only when all of
// its series are idle, because published next pointers are immutable.
func (m *metric) expire(cutoff int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.series.Range(func(h, v any) bool {
		n := 0
		for s := v.(*series); s != nil; s = s.next {
			if s.seen.Load() >= cutoff {
				return true
			}
			n++
		}
		m.series.Delete(h)
		m.n.Add(-int64(n))
		m.expired.Add(uint64(n))
		return true
	})
}

// len returns the number of series.
func (m *metric) len() int { return int(m.n.Load()) }

// collect sends every series as a constant metric, in a stable order.
func (m *metric) collect(ch chan<- prometheus.Metric) {
	var all []*series
	m.series.Range(func(_, v any) bool {
		for s := v.(*series); s != nil; s = s.next {
			all = append(all, s)
		}
		return true
	})
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	for _, s := range all {
		var pm prometheus.Metric
		var err error
		switch m.kind {
		case kindCounter:
			pm, err = prometheus.NewConstMetric(m.desc, prometheus.CounterValue, math.Float64frombits(s.value.Load()), s.values...)
		case kindGauge:
			pm, err = prometheus.NewConstMetric(m.desc, prometheus.GaugeValue, math.Float64frombits(s.value.Load()), s.values...)
		case kindHistogram:
			cum := make(map[float64]uint64, len(m.buckets))
			var total uint64
			for i, b := range m.buckets {
				total += s.counts[i].Load()
				cum[b] = total
			}
			total += s.counts[len(m.buckets)].Load()
			pm, err = prometheus.NewConstHistogram(m.desc, total, math.Float64frombits(s.sum.Load()), cum, s.values...)
		}
		if err != nil {
			ch <- prometheus.NewInvalidMetric(m.desc, err)
			continue
		}
		ch <- pm
	}
}
