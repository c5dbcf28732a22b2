package quota

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// Outcome classifies an allocation.
type Outcome uint8

const (
	// Granted: the whole amount was granted.
	Granted Outcome = iota
	// Partial: a best-effort request got less than it asked for.
	Partial
	// Exhausted: nothing was granted.
	Exhausted
	// Unknown: the quota is not configured; the amount is granted.
	Unknown
)

var outcomeNames = [...]string{"granted", "partial", "exhausted", "unknown"}

func (o Outcome) String() string { return outcomeNames[o] }

// UnknownValidDuration is how long a grant of an unconfigured quota is valid.
const UnknownValidDuration = time.Minute

// Result is the answer to one quota request.
type Result struct {
	Outcome       Outcome
	Granted       int64
	ValidDuration time.Duration
	// Referenced are the dimension attributes that selected the window.
	Referenced []Reference
	// Message explains an exhaustion.
	Message string
}

// Reference is an attribute (or string-map entry) the result depends on.
type Reference struct {
	Name    string
	MapKey  string
	HasKey  bool
	Present bool
}

// dimension is one resolved dimension.
type dimension struct {
	label string
	ref   Reference
}

// window is one dimension key's rolling window: counts per tick.
type window struct {
	counts []int64
	tick   int64 // absolute index of the newest tick in counts
	used   int64 // sum of counts
}

// advance moves the window to tick now, dropping ticks that left it.
func (w *window) advance(now int64) {
	n := int64(len(w.counts))
	if now <= w.tick {
		return
	}
	if now-w.tick >= n {
		clear(w.counts)
		w.used = 0
	} else {
		for t := w.tick + 1; t <= now; t++ {
			i := t % n
			w.used -= w.counts[i]
			w.counts[i] = 0
		}
	}
	w.tick = now
}

// limiter is one configured quota.
type limiter struct {
	cfg       Config
	tick      time.Duration
	dims      []dimension // sorted by label
	overrides []override

	mu      sync.Mutex
	windows map[string]*window
	over    *window // shared by keys beyond MaxKeys
}

type override struct {
	values []string // per dims index; "\x00any" matches anything
	max    int64
}

const anyValue = "\x00any"

// Manager holds every configured quota. It is safe for concurrent use.
type Manager struct {
	quotas map[string]*limiter
	log    *zap.Logger
	now    func() time.Time
}

// New builds a Manager from validated, defaulted quota configs. now may be
// nil (time.Now).
func New(cfgs []Config, log *zap.Logger, now func() time.Time) (*Manager, error) {
	if err := ValidateAll("quotas", cfgs); err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	m := &Manager{quotas: make(map[string]*limiter, len(cfgs)), log: log, now: now}
	for _, c := range cfgs {
		l := &limiter{cfg: c, tick: c.Window.D() / time.Duration(c.Ticks), windows: make(map[string]*window)}
		for _, label := range sortedKeys(c.Dimensions) {
			l.dims = append(l.dims, dimension{label: label, ref: parseRef(c.Dimensions[label])})
		}
		for _, o := range c.Overrides {
			ov := override{max: o.MaxAmount, values: make([]string, len(l.dims))}
			for i, d := range l.dims {
				v, ok := o.Dimensions[d.label]
				if !ok {
					v = anyValue
				}
				ov.values[i] = v
			}
			l.overrides = append(l.overrides, ov)
		}
		l.over = &window{counts: make([]int64, c.Ticks)}
		m.quotas[c.Name] = l
	}
	return m, nil
}

func parseRef(s string) Reference {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '['); i >= 0 {
		return Reference{Name: s[:i], MapKey: s[i+1 : len(s)-1], HasKey: true}
	}
	return Reference{Name: s}
}

// Has reports whether name is a configured quota.
func (m *Manager) Has(name string) bool { _, ok := m.quotas[name]; return ok }

// Alloc charges amount to the window of the request's dimension key. With
// bestEffort, whatever is left (possibly less than amount) is granted;
// otherwise the request gets all or nothing. A non-positive amount is
// treated as 1.
func (m *Manager) Alloc(name string, bag attributes.Bag, amount int64, bestEffort bool) Result {
	l, ok := m.quotas[name]
	if !ok {
		return Result{Outcome: Unknown, Granted: max(amount, 1), ValidDuration: UnknownValidDuration}
	}
	if amount <= 0 {
		amount = 1
	}
	values := make([]string, len(l.dims))
	refs := make([]Reference, len(l.dims))
	var key strings.Builder
	for i, d := range l.dims {
		v, present := lookup(bag, d.ref)
		values[i] = v
		refs[i] = d.ref
		refs[i].Present = present
		if present {
			key.WriteByte(1)
			key.WriteString(v)
		} else {
			key.WriteByte(0)
		}
		key.WriteByte(0xff)
	}
	limit := l.cfg.MaxAmount
	for _, o := range l.overrides {
		if o.match(values) {
			limit = o.max
			break
		}
	}
	now := m.now()
	tick := now.UnixNano() / int64(l.tick)

	l.mu.Lock()
	w := l.window(key.String(), tick)
	w.advance(tick)
	left := max(limit-w.used, 0)
	granted := amount
	res := Result{Referenced: refs, ValidDuration: l.cfg.ValidDuration.D()}
	switch {
	case left >= amount:
		res.Outcome = Granted
	case bestEffort && left > 0:
		granted, res.Outcome = left, Partial
	default:
		granted, res.Outcome = 0, Exhausted
	}
	if granted > 0 {
		w.counts[tick%int64(len(w.counts))] += granted
		w.used += granted
	}
	l.mu.Unlock()

	res.Granted = granted
	if res.Outcome == Exhausted {
		// Capacity frees up at the next tick at the earliest.
		next := time.Unix(0, (tick+1)*int64(l.tick))
		res.ValidDuration = next.Sub(now)
		res.Message = fmt.Sprintf("quota %q exhausted: %d of %d used in the last %s, %d requested", name, limit-left, limit, l.cfg.Window, amount)
	}
	return res
}

// window returns the window of key, creating it within the key limit.
// l.mu must be held.
func (l *limiter) window(key string, tick int64) *window {
	if w, ok := l.windows[key]; ok {
		return w
	}
	if len(l.windows) >= l.cfg.MaxKeys {
		n := int64(l.cfg.Ticks)
		for k, w := range l.windows {
			if tick-w.tick >= n { // every count has left the window
				delete(l.windows, k)
			}
		}
		if len(l.windows) >= l.cfg.MaxKeys {
			return l.over
		}
	}
	w := &window{counts: make([]int64, l.cfg.Ticks), tick: tick}
	l.windows[key] = w
	return w
}

// Keys returns how many dimension keys the quota holds.
func (m *Manager) Keys(name string) int {
	l, ok := m.quotas[name]
	if !ok {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.windows)
}

func (o override) match(values []string) bool {
	for i, v := range o.values {
		if v != anyValue && v != values[i] {
			return false
		}
	}
	return true
}

func lookup(bag attributes.Bag, r Reference) (string, bool) {
	v, ok := bag.Get(r.Name)
	if !ok {
		return "", false
	}
	if r.HasKey {
		if v.Kind() != attributes.KindStringMap {
			return "", false
		}
		return v.StringMapValue().Get(r.MapKey)
	}
	if v.Kind() == attributes.KindString {
		return v.StringValue(), true
	}
	return v.String(), true
}

// Proto renders r as a QuotaResult for a peer knowing globalWordCount
// global words. An exhausted quota carries status RESOURCE_EXHAUSTED.
func (r Result) Proto(globalWordCount uint32) *mixerv1.CheckResponse_QuotaResult {
	qr := &mixerv1.CheckResponse_QuotaResult{
		ValidDuration: durationpb.New(r.ValidDuration),
		GrantedAmount: r.Granted,
		Status:        &status.Status{Code: int32(code.Code_OK)},
	}
	if r.Outcome == Exhausted {
		qr.Status = &status.Status{Code: int32(code.Code_RESOURCE_EXHAUSTED), Message: r.Message}
	}
	if len(r.Referenced) > 0 {
		enc := attributes.NewWordEncoder(globalWordCount)
		ra := &mixerv1.ReferencedAttributes{}
		for _, ref := range r.Referenced {
			am := &mixerv1.ReferencedAttributes_AttributeMatch{Name: enc.Index(ref.Name), Condition: mixerv1.ReferencedAttributes_ABSENCE}
			if ref.HasKey {
				am.MapKey = enc.Index(ref.MapKey)
			}
			if ref.Present {
				am.Condition = mixerv1.ReferencedAttributes_EXACT
			}
			ra.AttributeMatches = append(ra.AttributeMatches, am)
		}
		ra.Words = enc.Words()
		qr.ReferencedAttributes = ra
	}
	return qr
}
