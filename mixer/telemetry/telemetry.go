package telemetry

import (
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/remora-mesh/remora/attributes"
)

// Options are a Telemetry's collaborators.
type Options struct {
	// Logger receives configuration messages; nil means no logging.
	Logger *zap.Logger
	// Now is the clock used for series expiry; nil means time.Now.
	Now func() time.Time
}

// matcher selects the records a metric observes.
type matcher struct {
	tcp       int8     // 1: only tcp records, -1: only non-tcp records, 0: any
	event     string   // required connection.event, "" for any
	protocols []string // allowed context.protocol values, empty for any
}

func (m *matcher) match(proto, event string) bool {
	switch {
	case m.tcp > 0 && proto != attributes.ProtocolTCP,
		m.tcp < 0 && proto == attributes.ProtocolTCP,
		m.event != "" && event != m.event:
		return false
	case len(m.protocols) > 0:
		return slices.Contains(m.protocols, proto)
	}
	return true
}

type boundMetric struct {
	*metric
	matcher
}

// Telemetry computes metrics from report records. It implements
// prometheus.Collector; Record is safe for concurrent use, also while the
// metrics are collected.
type Telemetry struct {
	metrics []boundMetric
	sets    int
	expiry  time.Duration
	now     func() time.Time
	log     *zap.Logger
	scratch sync.Pool
	slots   resolved // names and fixed slots; vals unused
	proj    *attributes.Projection
	seed    maphash.Seed // of every metric's series hashes

	seriesDesc, overflowDesc, expiredDesc *prometheus.Desc
}

// scratch holds one record's resolved attributes and keys, one per label
// set.
type scratch struct {
	rec    resolved
	keys   [][]byte
	hashes []uint64 // of keys: metrics sharing a label set hash its key once
	done   []bool
	cache  []seriesCache // by metric, for the records of one batch
	batch  bool          // cache is in use (cleared when the batch ends)
}

// startBatch turns the series cache on for the records of one batch.
func (s *scratch) startBatch() { s.batch = true }

// endBatch forgets the batch's series, so that no pooled scratch keeps an
// expired series alive or observes into it.
func (s *scratch) endBatch() {
	clear(s.cache)
	s.batch = false
}

var _ prometheus.Collector = (*Telemetry)(nil)

// New builds the metrics of cfg, which must have passed Validate (after
// ApplyDefaults).
func New(cfg Config, opts Options) (*Telemetry, error) {
	if err := cfg.Validate("telemetry"); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	t := &Telemetry{
		expiry: cfg.SeriesExpiry.D(),
		now:    opts.Now,
		log:    opts.Logger,
		seriesDesc: prometheus.NewDesc("remora_mixer_telemetry_series",
			"Series currently held per telemetry metric.", []string{"metric"}, nil),
		overflowDesc: prometheus.NewDesc("remora_mixer_telemetry_series_overflow_total",
			"Observations dropped because the metric reached max_series_per_metric.", []string{"metric"}, nil),
		expiredDesc: prometheus.NewDesc("remora_mixer_telemetry_series_expired_total",
			"Series removed after series_expiry without updates.", []string{"metric"}, nil),
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.log == nil {
		t.log = zap.NewNop()
	}
	if t.expiry <= 0 {
		t.expiry = DefaultSeriesExpiry
	}
	limit := cfg.MaxSeriesPerMetric
	if limit <= 0 {
		limit = DefaultMaxSeriesPerMetric
	}
	seed := maphash.MakeSeed()
	t.seed = seed
	newSet := func(labels []label) *labelSet {
		ls := &labelSet{id: t.sets, labels: labels}
		for _, l := range labels {
			ls.names = append(ls.names, l.name)
		}
		t.sets++
		return ls
	}
	if !cfg.DisableStandard {
		req, tcp := newSet(requestLabels()), newSet(tcpLabels())
		for _, d := range standardDefs {
			ls, m := req, matcher{tcp: -1}
			if d.tcp {
				ls, m = tcp, matcher{tcp: 1, event: d.event}
			}
			t.metrics = append(t.metrics, boundMetric{newMetric(d.name, d.help, d.kind, d.buckets, ls, d.value, limit, seed), m})
		}
	}
	for _, mc := range cfg.Metrics {
		labels := make([]label, 0, len(mc.Labels))
		for _, lc := range mc.Labels {
			refs, _ := parseExpr(lc.Attribute) // checked by Validate
			def := lc.Default
			if def == "" {
				def = DefaultLabelValue
			}
			labels = append(labels, label{name: lc.Name, refs: refs, def: def})
		}
		var k kind
		switch mc.Kind {
		case "histogram":
			k = kindHistogram
		case "gauge":
			k = kindGauge
		default:
			k = kindCounter
		}
		vf := valueFunc{one: mc.Value == ""}
		if !vf.one {
			vf.refs, _ = parseExpr(mc.Value)
		}
		buckets := mc.Buckets
		if k == kindHistogram && len(buckets) == 0 {
			buckets = prometheus.DefBuckets
		}
		help := mc.Help
		if help == "" {
			help = "Custom metric " + mc.Name + "."
		}
		m := newMetric(mc.Name, help, k, buckets, newSet(labels), vf, limit, seed)
		t.metrics = append(t.metrics, boundMetric{m, matcher{protocols: mc.Protocols}})
	}
	t.resolveSlots()
	proj, err := attributes.NewProjection(t.slots.names)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	t.proj = proj
	t.scratch.New = func() any {
		s := &scratch{rec: t.slots, keys: make([][]byte, t.sets), hashes: make([]uint64, t.sets), done: make([]bool, t.sets),
			cache: make([]seriesCache, len(t.metrics))}
		s.rec.vals = make([]attributes.Value, len(t.slots.names))
		for i := range s.keys {
			s.keys[i] = make([]byte, 0, 512)
		}
		return s
	}
	t.log.Debug("telemetry metrics built", zap.Int("metrics", len(t.metrics)))
	return t, nil
}

// resolveSlots gives every attribute the metrics read a slot in resolved.
func (t *Telemetry) resolveSlots() {
	var refs []*attrRef
	for _, m := range t.metrics {
		for li := range m.labels.labels {
			for ri := range m.labels.labels[li].refs {
				refs = append(refs, &m.labels.labels[li].refs[ri])
			}
		}
		for ri := range m.value.refs {
			refs = append(refs, &m.value.refs[ri])
		}
	}
	fixed := []string{attributes.ContextProtocol, attributes.ConnectionEvent, attributes.ContextReporterKind, attributes.ConnectionMTLS}
	names := slices.Clone(fixed)
	for _, r := range refs {
		names = append(names, r.name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	slot := func(n string) int { i, _ := slices.BinarySearch(names, n); return i }
	for _, r := range refs {
		r.slot = slot(r.name)
	}
	t.slots = resolved{names: names, proto: slot(fixed[0]), event: slot(fixed[1]), reporter: slot(fixed[2]), mtls: slot(fixed[3])}
}

// Record observes one record in every metric it matches.
func (t *Telemetry) Record(b attributes.Bag) {
	s := t.scratch.Get().(*scratch)
	t.recordBag(s, b, t.now().Unix())
	t.scratch.Put(s)
}

// RecordBatch observes every record of a report.
func (t *Telemetry) RecordBatch(bags []attributes.Bag) {
	s := t.scratch.Get().(*scratch)
	now := t.now().Unix()
	s.startBatch()
	for _, b := range bags {
		t.recordBag(s, b, now)
	}
	s.endBatch()
	t.scratch.Put(s)
}

// Projection returns the attributes the metrics read, for a
// ProjectionDecoder whose rows RecordRows takes.
func (t *Telemetry) Projection() *attributes.Projection { return t.proj }

// RecordRows observes n records given as the rows of t.Projection():
// rows[i*len(t.Projection().Names())+c] is record i's value of column c,
// the zero Value when absent. It is RecordBatch without bags: the same
// records give the same metrics. Every string in rows must be valid UTF-8
// (a decoder's are: protobuf strings are checked). The rows are only read,
// and not retained.
func (t *Telemetry) RecordRows(rows []attributes.Value, n int) {
	k := len(t.slots.names)
	if k > 0 {
		n = min(n, len(rows)/k)
	}
	s := t.scratch.Get().(*scratch)
	now := t.now().Unix()
	own := s.rec.vals
	s.rec.utf8 = true // a decoder's words are checked UTF-8
	s.startBatch()
	for i := range n {
		s.rec.vals = rows[i*k : (i+1)*k : (i+1)*k]
		t.record(s, now)
	}
	s.endBatch()
	s.rec.vals, s.rec.utf8 = own, false
	t.scratch.Put(s)
}

// recordBag observes the record b.
func (t *Telemetry) recordBag(s *scratch, b attributes.Bag, now int64) {
	s.rec.fill(b)
	t.record(s, now)
}

// record observes the record whose values s.rec holds.
func (t *Telemetry) record(s *scratch, now int64) {
	rec := &s.rec
	var proto, event string
	if v, ok := rec.get(rec.proto); ok {
		proto = v.StringValue()
	}
	if proto == attributes.ProtocolTCP {
		if v, ok := rec.get(rec.event); ok {
			event = v.StringValue()
		}
	}
	clear(s.done)
	for i := range t.metrics {
		m := &t.metrics[i]
		if !m.match(proto, event) {
			continue
		}
		v, ok := m.value.get(rec)
		if !ok {
			continue
		}
		id := m.labels.id
		if !s.done[id] {
			s.keys[id] = m.labels.appendKey(s.keys[id][:0], rec)
			s.hashes[id] = maphash.Bytes(t.seed, s.keys[id])
			s.done[id] = true
		}
		var c *seriesCache
		if s.batch {
			c = &s.cache[i]
		}
		m.observeIn(c, s.keys[id], s.hashes[id], v, now)
	}
}

// Expire removes the series idle for longer than the configured expiry.
// Collect calls it before every scrape.
func (t *Telemetry) Expire() {
	cutoff := t.now().Add(-t.expiry).Unix()
	for _, m := range t.metrics {
		m.expire(cutoff)
	}
}

// Describe implements prometheus.Collector.
func (t *Telemetry) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range t.metrics {
		ch <- m.desc
	}
	ch <- t.seriesDesc
	ch <- t.overflowDesc
	ch <- t.expiredDesc
}

// Collect implements prometheus.Collector.
func (t *Telemetry) Collect(ch chan<- prometheus.Metric) {
	t.Expire()
	for _, m := range t.metrics {
		m.collect(ch)
		ch <- prometheus.MustNewConstMetric(t.seriesDesc, prometheus.GaugeValue, float64(m.len()), m.name)
		ch <- prometheus.MustNewConstMetric(t.overflowDesc, prometheus.CounterValue, float64(m.overflow.Load()), m.name)
		ch <- prometheus.MustNewConstMetric(t.expiredDesc, prometheus.CounterValue, float64(m.expired.Load()), m.name)
	}
}
