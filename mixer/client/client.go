package client

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/sockio"
	"github.com/remora-mesh/remora/internal/tlsconfig"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// Options are the client's dependencies.
type Options struct {
	Logger   *zap.Logger
	Registry prometheus.Registerer
	// Now is the clock for cache expiry; nil means time.Now.
	Now func() time.Time
	// DialOptions are added to the gRPC dial (tests use them).
	DialOptions []grpc.DialOption
}

// Result is the answer to a Check.
type Result struct {
	// Status is the precondition's code: codes.OK lets the request
	// through, anything else denies it (see HTTPStatus).
	Status codes.Code
	// Message is the server's reason for a denial.
	Message string
	// Directive holds header operations and a direct response; nil when
	// the server sent none. It is shared with the cache: read only.
	Directive *mixerv1.RouteDirective
	// CacheHit reports an answer from the local decision cache.
	CacheHit bool
	// TransportErr is set when the server could not be reached and the
	// fail policy produced the answer.
	TransportErr error
}

// Allowed reports whether the request may proceed.
func (r Result) Allowed() bool { return r.Status == codes.OK }

// HTTPStatus maps a gRPC code to the HTTP status a denied request gets, as
// Envoy maps them.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.DeadlineExceeded:
		return 504
	case codes.NotFound:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.PermissionDenied:
		return 403
	case codes.ResourceExhausted:
		return 429
	case codes.Unimplemented:
		return 501
	case codes.Unavailable:
		return 503
	case codes.Unauthenticated:
		return 401
	default: // Unknown, Internal, DataLoss
		return 500
	}
}

// Client talks to one Mixer server. It is safe for concurrent use.
type Client struct {
	cfg     Config
	log     *zap.Logger
	conn    *grpc.ClientConn
	rpc     mixerv1.MixerClient
	cache   *checkCache // nil when disabled
	m       *metrics
	batcher *batcher

	dedupPrefix string
	dedupSeq    atomic.Uint64
}

// New dials the server (lazily: no connection is made until the first
// call) and starts the report sender. cfg must have defaults applied and be
// valid. Close releases everything.
func New(cfg Config, opts Options) (*Client, error) {
	if err := cfg.Validate("mixer"); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	creds, err := transportCredentials(cfg.TLS)
	if err != nil {
		return nil, err
	}
	dial := append([]grpc.DialOption{
		grpc.WithContextDialer(sockio.DialContext),
		grpc.WithTransportCredentials(creds),
		// Reconnect quickly after a server restart: the default backoff
		// grows to two minutes, far too long for a sidecar.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(cfg.Address, dial...)
	if err != nil {
		return nil, fmt.Errorf("mixer client: %w", err)
	}
	c := &Client{cfg: cfg, log: log.Named("mixer_client"), conn: conn, rpc: mixerv1.NewMixerClient(conn)}
	if c.m, err = newMetrics(opts.Registry); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mixer client: metrics: %w", err)
	}
	if cfg.Check.CacheEntries > 0 {
		c.cache = newCheckCache(cfg.Check.CacheEntries, now, c.m)
	}
	var seed [8]byte
	if _, err := cryptorand.Read(seed[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mixer client: %w", err)
	}
	c.dedupPrefix = strconv.FormatUint(binary.LittleEndian.Uint64(seed[:]), 36) + "-"
	c.batcher = newBatcher(cfg.Report, conn, c.m, c.log)
	return c, nil
}

func transportCredentials(t *TLSConfig) (credentials.TransportCredentials, error) {
	if t == nil {
		t = &TLSConfig{}
	}
	creds, err := tlsconfig.Client{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}.Credentials()
	if err != nil {
		return nil, fmt.Errorf("mixer client: %w", err)
	}
	return creds, nil
}

// Check asks whether the request described by bag may proceed, answering
// from the cache when an earlier decision applies. quotas, when not empty,
// asks for that amount of each named quota; such checks always reach the
// server (quota is not cached) and a quota the server refuses turns the
// answer into RESOURCE_EXHAUSTED. Check never returns an error: transport
// failures are turned into an answer by the fail policy.
func (c *Client) Check(ctx context.Context, bag attributes.Bag, quotas map[string]int64) Result {
	if c.cache != nil && len(quotas) == 0 {
		r, hit, f, lead := c.cache.lookup(bag)
		if hit {
			c.count(r)
			return r
		}
		if lead {
			defer c.cache.land(f)
		} else if f != nil {
			// Another request is asking about the same values: its
			// answer serves this one too, unless it could not be cached.
			select {
			case <-f.done:
				if r, ok := c.cache.peek(bag); ok {
					c.count(r)
					return r
				}
			case <-ctx.Done():
			}
		}
	}
	gwc := attributes.GlobalWordCount()
	req := &mixerv1.CheckRequest{
		Attributes:      attributes.Compress(bag, gwc),
		GlobalWordCount: gwc,
		DeduplicationId: c.dedupPrefix + strconv.FormatUint(c.dedupSeq.Add(1), 36),
	}
	if len(quotas) > 0 {
		req.Quotas = make(map[string]*mixerv1.CheckRequest_QuotaParams, len(quotas))
		for name, amount := range quotas {
			req.Quotas[name] = &mixerv1.CheckRequest_QuotaParams{Amount: amount}
		}
	}
	resp, err := c.callCheck(ctx, req)
	if err != nil {
		return c.failPolicy(err)
	}
	pre := resp.GetPrecondition()
	r := Result{
		Status:    codes.Code(pre.GetStatus().GetCode()),
		Message:   pre.GetStatus().GetMessage(),
		Directive: pre.GetRouteDirective(),
	}
	if c.cache != nil {
		if err := c.cache.insert(bag, pre.GetReferencedAttributes(), gwc, r, pre.GetValidDuration().AsDuration(), pre.GetValidUseCount()); err != nil {
			c.log.Debug("decision not cached", zap.Error(err))
		}
	}
	if r.Allowed() {
		for name := range quotas {
			qs := resp.GetQuotas()[name].GetStatus()
			if q, ok := resp.GetQuotas()[name]; !ok || codes.Code(qs.GetCode()) != codes.OK || q.GetGrantedAmount() < quotas[name] {
				r.Status, r.Message = codes.ResourceExhausted, "quota "+name+" exhausted"
				if qs.GetMessage() != "" {
					r.Message = qs.GetMessage()
				}
				break
			}
		}
	}
	c.count(r)
	return r
}

// callCheck calls the server, retrying transport failures with randomized
// exponential backoff under the same deduplication id.
func (c *Client) callCheck(ctx context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	ck := c.cfg.Check
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, ck.Timeout.D())
		resp, err := c.rpc.Check(actx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		if attempt >= ck.Retries || !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		c.m.checkRetries.Inc()
		if !wait(ctx, backoffWait(attempt, ck.BaseRetryWait.D(), ck.MaxRetryWait.D())) {
			return nil, err
		}
	}
}

func (c *Client) failPolicy(err error) Result {
	if c.cfg.Check.FailPolicy == FailOpen {
		c.m.checkFailOpen.Inc()
		return Result{Status: codes.OK, TransportErr: err}
	}
	c.m.checkFailClose.Inc()
	return Result{Status: codes.Unavailable, Message: "policy server unavailable", TransportErr: err}
}

func (c *Client) count(r Result) {
	if r.Allowed() {
		c.m.checkOK.Inc()
	} else {
		c.m.checkDenied.Inc()
	}
}

// retryable reports whether a Check failure is worth another attempt.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Unknown:
		return true
	}
	return false
}

// backoffWait is uniform in [base, min(max, base·2^attempt)].
func backoffWait(attempt int, base, max time.Duration) time.Duration {
	hi := base << min(attempt, 30)
	if hi > max || hi <= 0 {
		hi = max
	}
	if hi <= base {
		return base
	}
	return base + rand.N(hi-base)
}

// wait blocks for d or until ctx ends, reporting whether d elapsed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ReportBuilder returns a builder for a report bag, holding the
// attributes of base (string maps copied, see attributes.Builder.Reset).
// Its storage is that of reports already encoded, so that reporting costs
// no allocation once warm. Give it to Report.
func (c *Client) ReportBuilder(base attributes.Bag) *attributes.Builder {
	return c.batcher.builder(base)
}

// Report queues the bag bd builds for delivery and takes bd: once the bag
// is encoded the client resets bd and reuses its storage, string maps from
// bd.KVs included, so the caller must use neither bd nor those maps after
// the call. The caller never sees the bag itself, so nothing else can hold
// it. bd may come from ReportBuilder or anywhere else. Report never blocks.
func (c *Client) Report(bd *attributes.Builder) { c.batcher.add(bd) }

// Close flushes queued reports until ctx ends, then closes the connection.
// Records still undelivered then are counted as dropped.
func (c *Client) Close(ctx context.Context) error {
	err := c.batcher.close(ctx)
	return errors.Join(err, c.conn.Close())
}

// Flush closes the open report batch so that it is sent now instead of at
// max_batch_time (graceful drains use it).
func (c *Client) Flush() { c.batcher.flush() }
