package policy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opametrics "github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/remora-mesh/remora/attributes"
)

// Options are the engine's collaborators.
type Options struct {
	// Logger receives the engine's logs (named "policy") and the decision
	// log (named "policy.decision"). Nil means no logging.
	Logger *zap.Logger
	// Registry receives the engine's metrics. Nil means unregistered.
	Registry prometheus.Registerer
	// OnReload, when set, is called after every load attempt — the first
	// one in New, then each one made by the watcher or by Reload — with its
	// error (nil on success). Tests use it to wait for a reload; it must
	// not block for long.
	OnReload func(error)
	// Now is the decision cache's clock; nil means time.Now.
	Now func() time.Time
}

// Engine evaluates one compiled policy, swapped atomically on reload. It
// is safe for concurrent use.
type Engine struct {
	cfg     Config
	query   ast.Ref
	log     *zap.Logger
	metrics *metrics
	dlog    *decisionLog
	onLoad  func(error)
	reg     prometheus.Registerer
	now     func() time.Time

	current atomic.Pointer[compiledPolicy]

	reloadMu   sync.Mutex // serialises reloads
	lastDigest [32]byte   // digest of the last sources tried; under reloadMu
	lastRead   string     // last error reading the sources; under reloadMu

	statusMu  sync.Mutex
	lastError error

	idPrefix string
	idSeq    atomic.Uint64

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closed    atomic.Bool
}

// noMetrics discards OPA's evaluation metrics.
var noMetrics = opametrics.NoOp()

// compiledPolicy is one prepared policy and what the analysis found.
type compiledPolicy struct {
	pq       rego.PreparedEvalQuery
	analysis *analysis
	cache    *decisionCache // nil when off or the policy is not cacheable
	// txn is a read transaction on the policy's own data store, opened
	// once and shared by every evaluation: nothing ever writes the store
	// (new data is a new compiledPolicy), so one read transaction serves
	// all of them, safely in parallel, and is dropped with the store.
	txn      storage.Transaction
	revision string
	modules  int
}

// New loads and compiles the policy named by cfg (defaults applied, then
// validated), prepares it for evaluation and, when cfg watches, starts a
// goroutine that reloads it when its files change. It fails when the
// first load fails. Close releases the engine.
func New(ctx context.Context, cfg Config, opts Options) (*Engine, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate("policy"); err != nil {
		return nil, fmt.Errorf("policy: invalid configuration: %w", err)
	}
	query, _ := parseQuery(cfg.Query)
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	e := &Engine{
		cfg:      cfg,
		query:    query,
		log:      log.Named("policy"),
		metrics:  newMetrics(),
		onLoad:   opts.OnReload,
		now:      opts.Now,
		idPrefix: hex.EncodeToString(rnd[:]) + "-",
	}
	e.metrics.cacheEntries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "remora_policy_decision_cache_entries",
		Help: "Decisions held by the server-side decision cache of the serving policy.",
	}, func() float64 {
		if p := e.current.Load(); p != nil && p.cache != nil {
			return float64(p.cache.len())
		}
		return 0
	})
	if opts.Registry != nil {
		if err := opts.Registry.Register(e.metrics); err != nil {
			return nil, fmt.Errorf("policy: registering metrics: %w", err)
		}
		e.reg = opts.Registry
	}
	if err := e.reload(ctx, true); err != nil {
		e.unregister()
		return nil, err
	}
	if cfg.DecisionLog.Enabled {
		e.dlog = newDecisionLog(e.log.Named("decision"), cfg.DecisionLog, func(reason string) {
			if reason == "rate" {
				e.metrics.droppedRate.Inc()
			} else {
				e.metrics.droppedQ.Inc()
			}
		})
	}
	if cfg.WatchEnabled() && len(cfg.Paths) > 0 {
		wctx, cancel := context.WithCancel(context.Background())
		e.stop = cancel
		e.done = make(chan struct{})
		go e.watch(wctx, cfg.PollInterval.D())
	}
	return e, nil
}

func (e *Engine) unregister() {
	if e.reg != nil {
		e.reg.Unregister(e.metrics)
	}
}

// Close stops the watcher and flushes the decision log; Eval returns
// ErrClosed afterwards. Close is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		if e.stop != nil {
			e.stop()
			<-e.done
		}
		if e.dlog != nil {
			e.dlog.close()
		}
	})
	return nil
}

// Ready reports whether a policy is serving. detail describes the serving
// policy and, when the last reload failed, names its error (the previous
// policy keeps serving then).
func (e *Engine) Ready() (bool, string) {
	p := e.current.Load()
	e.statusMu.Lock()
	lastErr := e.lastError
	e.statusMu.Unlock()
	if p == nil {
		if lastErr != nil {
			return false, "no policy loaded: " + lastErr.Error()
		}
		return false, "no policy loaded"
	}
	detail := fmt.Sprintf("policy %s: %d modules, query %s", p.revision, p.modules, e.cfg.Query)
	if !p.analysis.cacheable {
		detail += ", not cacheable (" + p.analysis.reason + ")"
	}
	if lastErr != nil {
		detail += "; last reload failed: " + lastErr.Error()
	}
	return true, detail
}

// Reload reads and recompiles the policy now, whether or not its files
// changed. On failure the previous policy keeps serving.
func (e *Engine) Reload(ctx context.Context) error { return e.reload(ctx, true) }

// reload loads the sources and, when they changed since the last attempt
// (or force is set), compiles and swaps them in.
func (e *Engine) reload(ctx context.Context, force bool) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	set, err := readSources(e.cfg.Paths)
	if err == nil {
		e.lastRead = ""
		if !force && set.digest == e.lastDigest {
			return nil
		}
		e.lastDigest = set.digest
	} else {
		// Report a read error once, not on every poll.
		if !force && err.Error() == e.lastRead {
			return err
		}
		e.lastRead = err.Error()
		e.lastDigest = [32]byte{}
	}
	var p *compiledPolicy
	if err == nil {
		p, err = e.compile(ctx, set)
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrLoad, err)
		e.metrics.reloadFailed.Inc()
		e.statusMu.Lock()
		e.lastError = err
		e.statusMu.Unlock()
		e.log.Error("policy load failed; the previous policy keeps serving", zap.Error(err))
	} else {
		e.current.Store(p)
		e.metrics.reloadOK.Inc()
		e.metrics.lastReload.SetToCurrentTime()
		if p.analysis.cacheable {
			e.metrics.cacheable.Set(1)
		} else {
			e.metrics.cacheable.Set(0)
		}
		e.statusMu.Lock()
		e.lastError = nil
		e.statusMu.Unlock()
		e.log.Info("policy loaded", zap.String("revision", p.revision), zap.Int("modules", p.modules),
			zap.Bool("cacheable", p.analysis.cacheable), zap.String("not_cacheable_reason", p.analysis.reason),
			zap.Int("referenced_attributes", len(p.analysis.refs)))
	}
	if e.onLoad != nil {
		e.onLoad(err)
	}
	return err
}

// compile parses, compiles, analyses and prepares a source set.
func (e *Engine) compile(ctx context.Context, set *sourceSet) (*compiledPolicy, error) {
	l, err := parseSources(set, e.cfg.Modules, e.cfg.RegoVersion)
	if err != nil {
		return nil, err
	}
	for _, name := range l.v0 {
		e.log.Info("module parsed as Rego v0", zap.String("module", name))
	}
	c := ast.NewCompiler().WithDefaultRegoVersion(ast.RegoV1)
	c.Compile(l.modules)
	if c.Failed() {
		return nil, c.Errors
	}
	a := analyze(c, e.query)
	if c.RuleTree.Find(e.query) == nil && !dataHas(l.data, e.query) {
		e.log.Warn("the query matches no rule or data document: every decision is undefined, which denies",
			zap.String("query", e.cfg.Query))
	}
	store := inmem.NewFromObjectWithOpts(l.data, inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(e.query)))),
		rego.Compiler(c),
		rego.Store(store),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, err
	}
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	cp := &compiledPolicy{
		pq:       pq,
		analysis: a,
		revision: revision(set, e.cfg.Modules),
		modules:  len(l.modules),
		txn:      txn,
	}
	if dc := e.cfg.DecisionCache; !dc.Disabled && a.cacheable {
		cp.cache = newDecisionCache(a.refs, dc.MaxEntries, dc.TTL.D(), e.metrics)
	}
	return cp, nil
}

// Eval evaluates the policy for bag. An undefined decision is a denial;
// an evaluation failure or an invalid decision value is an error
// (ErrEval, ErrDecision, ErrInput; ErrNotReady and ErrClosed when there is
// nothing to evaluate). It is safe for concurrent use and never waits for
// a reload.
func (e *Engine) Eval(ctx context.Context, bag attributes.Bag) (*Decision, error) {
	if e.closed.Load() {
		return nil, ErrClosed
	}
	p := e.current.Load()
	if p == nil {
		return nil, ErrNotReady
	}
	start := time.Now()
	var d *Decision
	var err error
	var kb [256]byte
	var key []byte
	now := start
	if p.cache != nil {
		if e.now != nil {
			now = e.now()
		}
		key = p.cache.appendKey(kb[:0], bag)
		if cached := p.cache.get(key, now); cached != nil {
			c := *cached // shared read-only but for its own ID
			c.ID = e.newID()
			d = &c
		}
	}
	if d == nil {
		d, err = e.eval(ctx, p, bag)
		if err == nil && p.cache != nil {
			p.cache.put(key, d, now)
		}
		e.metrics.evalDuration.Observe(time.Since(start).Seconds())
	}
	elapsed := time.Since(start)
	switch {
	case err != nil:
		e.metrics.evalError.Inc()
	case d.Allowed:
		e.metrics.allow.Inc()
	default:
		e.metrics.deny.Inc()
	}
	if e.dlog != nil && e.dlog.sampled() {
		e.logDecision(p, bag, d, err, elapsed, start)
	}
	return d, err
}

func (e *Engine) eval(ctx context.Context, p *compiledPolicy, bag attributes.Bag) (*Decision, error) {
	input, err := buildInput(bag, &p.analysis.needs)
	if err != nil {
		return nil, err
	}
	// The evaluation is cancelled with ctx, as PreparedEvalQuery.Eval
	// does by itself, but through context.AfterFunc instead of a goroutine
	// per evaluation; OPA's per-evaluation metrics are never read, so they
	// are a no-op.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	rs, err := p.pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTransaction(p.txn),
		rego.EvalMetrics(noMetrics), rego.EvalExternalCancel(cancel))
	stop()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEval, err)
	}
	d := &Decision{
		ID:            e.newID(),
		ValidDuration: e.cfg.ValidDuration.D(),
		ValidUseCount: e.cfg.ValidUseCount,
		Cacheable:     p.analysis.cacheable,
	}
	if len(rs) > 0 && len(rs[0].Expressions) > 0 {
		o, err := decodeDecision(rs[0].Expressions[0].Value, d)
		if err != nil {
			return nil, err
		}
		if o.hasValidDuration {
			d.ValidDuration = o.validDuration
		}
		if o.hasValidUseCount {
			d.ValidUseCount = o.validUseCount
		}
		if o.notCacheable {
			d.Cacheable = false
		}
	}
	if d.Cacheable {
		d.Referenced = p.analysis.references(bag)
	}
	return d, nil
}

// newID returns a fresh decision ID, in one allocation.
func (e *Engine) newID() string {
	var b [48]byte
	id := append(b[:0], e.idPrefix...)
	return string(strconv.AppendUint(id, e.idSeq.Add(1), 10))
}

func (e *Engine) logDecision(p *compiledPolicy, bag attributes.Bag, d *Decision, err error, elapsed time.Duration, at time.Time) {
	str := func(name string) string {
		v, _ := bag.Get(name)
		return v.StringValue()
	}
	entry := logEntry{
		method:    str(attributes.RequestMethod),
		path:      str(attributes.RequestPath),
		host:      str(attributes.RequestHost),
		principal: str(attributes.SourcePrincipal),
		duration:  elapsed,
		revision:  p.revision,
		at:        at,
	}
	if err != nil {
		entry.id = e.newID()
		entry.err = err.Error()
	} else {
		entry.id = d.ID
		entry.allowed = d.Allowed
		entry.status = d.HTTPStatus
		entry.cacheable = d.Cacheable
		entry.references = len(d.Referenced)
	}
	e.dlog.offer(entry)
}

// revision identifies a policy version: a digest of the files read and the
// embedded modules.
func revision(set *sourceSet, modules map[string]string) string {
	h := sha256.New()
	h.Write(set.digest[:])
	names := make([]string, 0, len(modules))
	for name := range modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(h, "%s\x00%d\x00%s", name, len(modules[name]), modules[name])
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// dataHas reports whether data holds a document at the query's path.
func dataHas(data map[string]any, query ast.Ref) bool {
	var cur any = data
	for _, t := range query[1:] {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		k, ok := t.Value.(ast.String)
		if !ok {
			return false
		}
		if cur, ok = m[string(k)]; !ok {
			return false
		}
	}
	return true
}
