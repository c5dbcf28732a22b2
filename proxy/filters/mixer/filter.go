package mixer

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/mixer/client"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
	"github.com/remora-mesh/remora/proxy/filter"
)

// Name is the filter's name in configuration.
const Name = "mixer"

// stateKey is where a stream's mixer state lives in its filter state.
const stateKey = "remora.mixer"

func init() { filter.Register(factory{}) }

type factory struct{}

var (
	_ filter.Factory           = factory{}
	_ filter.LogHandlerFactory = factory{}
)

func (factory) Name() string { return Name }

// compiled is a parsed listener-level config with everything that can be
// computed once: the client, the identity bags, the forwarded header.
type compiled struct {
	cfg    Config
	client *client.Client
	log    *zap.Logger
	// identity attributes (with mixer_attributes) by direction.
	inbound, outbound attributes.Bag
	// forwardHeader is the x-istio-attributes value of outbound requests.
	forwardHeader string
	quotas        map[string]int64
}

func (factory) ParseConfig(node *yaml.Node, env filter.Env) (any, error) {
	cfg, err := parseConfig(node)
	if err != nil {
		return nil, err
	}
	return newCompiled(cfg, env)
}

// parseConfig decodes, completes and validates the filter's config.
func parseConfig(node *yaml.Node) (Config, error) {
	var cfg Config
	if err := config.DecodeStrict(node, &cfg); err != nil {
		return Config{}, fmt.Errorf("mixer: %w", err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("mixer: %w", err)
	}
	return cfg, nil
}

// newCompiled builds what a validated config needs at run time, the
// client included (closed through env.AddCloser).
func newCompiled(cfg Config, env filter.Env) (*compiled, error) {
	log := env.Logger
	if log == nil {
		log = zap.NewNop()
	}
	c := &compiled{cfg: cfg, log: log.Named("mixer"), quotas: quotaMap(cfg.Quotas)}
	c.inbound = identityBag(cfg, attributes.ReporterInbound)
	c.outbound = identityBag(cfg, attributes.ReporterOutbound)
	fwd, err := attributes.EncodeForwarded(forwardBag(cfg.Identity, cfg.ForwardAttributes.Bag()))
	if err != nil {
		return nil, fmt.Errorf("mixer: forward_attributes: %w", err)
	}
	c.forwardHeader = fwd
	cl, err := client.New(cfg.Server, client.Options{Logger: env.Logger, Registry: env.Registry})
	if err != nil {
		return nil, fmt.Errorf("mixer: %w", err)
	}
	c.client = cl
	if env.AddCloser != nil {
		env.AddCloser(func() error {
			// Deliver what is queued; give up after the report timeout.
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.Report.Timeout.D())
			defer cancel()
			return cl.Close(ctx)
		})
	}
	return c, nil
}

// route is a parsed per-route ServiceConfig.
type route struct {
	ServiceConfig
	quotas map[string]int64
}

func (factory) ParsePerRouteConfig(node *yaml.Node) (any, error) {
	var sc ServiceConfig
	if err := config.DecodeStrict(node, &sc); err != nil {
		return nil, fmt.Errorf("mixer: %w", err)
	}
	if err := validateQuotas("quotas", sc.Quotas); err != nil {
		return nil, fmt.Errorf("mixer: %w", err)
	}
	return &route{ServiceConfig: sc, quotas: quotaMap(sc.Quotas)}, nil
}

// identityBag is the workload's identity as seen from direction, plus the
// configured mixer_attributes.
func identityBag(cfg Config, direction string) attributes.Bag {
	id := cfg.Identity
	bd := attributes.NewBuilder(12)
	set := func(name, v string) {
		if v != "" {
			bd.Set(name, attributes.String(v))
		}
	}
	if direction == attributes.ReporterInbound {
		set(attributes.DestinationUID, id.UID)
		set(attributes.DestinationNamespace, id.Namespace)
		set(attributes.DestinationWorkloadName, id.Workload)
		set(attributes.DestinationWorkloadNamespace, id.Namespace)
		set(attributes.DestinationServiceHost, id.ServiceHost)
		set(attributes.DestinationServiceName, id.ServiceName)
		set(attributes.DestinationServiceNamespace, id.Namespace)
		set(attributes.DestinationPrincipal, id.Principal)
		if len(id.Labels) > 0 {
			bd.Set(attributes.DestinationLabels, attributes.StringMapValue(attributes.StringMapOf(id.Labels)))
		}
	} else {
		set(attributes.SourceUID, id.UID)
		set(attributes.SourceNamespace, id.Namespace)
		set(attributes.SourceWorkloadName, id.Workload)
		set(attributes.SourceWorkloadNamespace, id.Namespace)
		set(attributes.SourcePrincipal, id.Principal)
		if len(id.Labels) > 0 {
			bd.Set(attributes.SourceLabels, attributes.StringMapValue(attributes.StringMapOf(id.Labels)))
		}
	}
	set(attributes.ContextReporterUID, id.UID)
	set(attributes.ContextReporterKind, direction)
	bd.Merge(cfg.MixerAttributes.Bag())
	return bd.Build()
}

// forwardBag is what an outbound request tells the next sidecar: who is
// calling, plus the configured forward attributes.
func forwardBag(id Identity, extra attributes.Bag) attributes.Bag {
	bd := attributes.NewBuilder(8)
	if id.UID != "" {
		bd.Set(attributes.SourceUID, attributes.String(id.UID))
	}
	if id.Namespace != "" {
		bd.Set(attributes.SourceNamespace, attributes.String(id.Namespace))
		bd.Set(attributes.SourceWorkloadNamespace, attributes.String(id.Namespace))
	}
	if id.Workload != "" {
		bd.Set(attributes.SourceWorkloadName, attributes.String(id.Workload))
	}
	if len(id.Labels) > 0 {
		bd.Set(attributes.SourceLabels, attributes.StringMapValue(attributes.StringMapOf(id.Labels)))
	}
	bd.Merge(extra)
	return bd.Build()
}

func (factory) NewFilter(cfg any, cb filter.Callbacks) filter.StreamFilter {
	f, _ := filterPool.Get().(*Filter)
	if f == nil {
		f = new(Filter)
	}
	f.c, f.cb = cfg.(*compiled), cb
	return f
}

// filterPool holds Filters whose streams have ended, with the storage of
// their check bags, for the next streams (see reporter.Log and release).
var filterPool sync.Pool

func (factory) NewLogHandler(cfg any) filter.AccessLogHandler {
	return &reporter{c: cfg.(*compiled)}
}

// streamState is what the filter hands its access-log handler.
type streamState struct {
	bag         attributes.Bag
	report      bool
	checked     bool
	cacheHit    bool
	code        codes.Code
	message     string
	responseOps []*mixerv1.HeaderOperation
}

// Filter is the mixer filter for one stream.
//
// Filters are pooled: the filter's access-log handler (reporter.Log), the
// last one to read the stream's state, releases it once the report bag is
// built. The check bag lives in bd's storage and is reclaimed by the next
// stream's Reset; that is safe because nothing keeps it beyond the
// stream: the check client and its cache copy what they need (the cache
// key bytes, the request's compressed form) before Check returns, and the
// report bag copies the check bag's attributes and string maps into
// storage of its own (client.ReportBuilder).
type Filter struct {
	filter.PassThrough
	c     *compiled
	cb    filter.Callbacks
	state *streamState // &st once DecodeHeaders ran
	st    streamState  // in the filter: one allocation per stream, not two
	bd    attributes.Builder
}

// release returns f to the pool. The caller guarantees that the stream is
// over and that nothing refers to f or its check bag any more.
func (f *Filter) release() {
	f.st = streamState{}
	f.c, f.cb, f.state = nil, nil, nil
	f.bd.Reset(attributes.Bag{}) // drop the references to the stream's values
	filterPool.Put(f)
}

// DecodeHeaders builds the request's attributes, checks them, and either
// continues (applying the server's request header operations) or ends the
// stream with a local reply.
func (f *Filter) DecodeHeaders(headers *filter.HeaderMap, endStream bool) filter.Status {
	c := f.c
	var svc *route
	if r := f.cb.Route(); r != nil {
		svc, _ = r.PerFilterConfig(Name).(*route)
	}
	direction := c.cfg.Direction
	if direction == "" {
		direction = f.cb.Connection().Direction
	}
	if direction != attributes.ReporterOutbound {
		direction = attributes.ReporterInbound
	}

	// The identity bag is sorted already: it is the builder's base, and
	// only the request's own attributes are sorted and merged into it.
	bd := &f.bd
	identity, forwarded := c.outbound, false
	if direction == attributes.ReporterInbound {
		identity = c.inbound
		if h, ok := headers.Get(attributes.ForwardedHeader); ok {
			headers.Del(attributes.ForwardedHeader) // never leaks to the application
			if !c.cfg.IgnoreForwardedAttributes {
				if fwd, err := attributes.DecodeForwarded(h, c.cfg.MaxForwardedSize); err == nil {
					// The caller's attributes first, our identity over them.
					bd.Reset(fwd)
					bd.Merge(identity)
					forwarded = true
				} else {
					c.log.Debug("ignoring forwarded attributes", zap.Error(err))
				}
			}
		}
	}
	if !forwarded {
		bd.Reset(identity)
	}
	if svc != nil {
		bd.Merge(svc.MixerAttributes.Bag())
	}
	requestAttributes(bd, headers, f.cb.StreamInfo(), f.cb.Connection(), direction)

	if direction == attributes.ReporterOutbound {
		fwd := c.forwardHeader
		if svc != nil && !svc.ForwardAttributes.IsZero() {
			merged := attributes.NewBuilderFrom(forwardBag(c.cfg.Identity, c.cfg.ForwardAttributes.Bag()), svc.ForwardAttributes.Bag().Len())
			merged.Merge(svc.ForwardAttributes.Bag())
			if s, err := attributes.EncodeForwarded(merged.Build()); err == nil {
				fwd = s
			}
		}
		headers.Set(attributes.ForwardedHeader, fwd)
	}

	st := &f.st
	*st = streamState{bag: bd.Build(), report: !c.cfg.DisableReportCalls}
	check, quotas := !c.cfg.DisableCheckCalls, c.quotas
	if svc != nil {
		st.report, check = !svc.DisableReportCalls, !svc.DisableCheckCalls
		if svc.quotas != nil {
			quotas = svc.quotas
		}
	}
	f.state = st
	f.cb.StreamInfo().SetFilterState(stateKey, f)
	if !check {
		return filter.Continue
	}

	res := c.client.Check(f.cb.Context(), st.bag, quotas)
	st.checked, st.cacheHit, st.code, st.message = true, res.CacheHit, res.Status, res.Message
	if res.TransportErr != nil && st.message == "" {
		st.message = res.TransportErr.Error()
	}
	d := res.Directive
	if !res.Allowed() || d.GetDirectResponseCode() != 0 {
		reply := filter.LocalReply{Code: client.HTTPStatus(res.Status), Details: "mixer_check"}
		if !res.Allowed() {
			reply.Body = codeName(res.Status) + ":" + res.Message
			reply.Flag = filter.UnauthorizedExternalService
			reply.Details = "mixer_check_denied"
		}
		if d.GetDirectResponseCode() != 0 {
			reply.Code, reply.Body = int(d.GetDirectResponseCode()), d.GetDirectResponseBody()
		}
		for _, op := range d.GetResponseHeaderOperations() {
			if op.GetOperation() != mixerv1.HeaderOperation_REMOVE {
				reply.Headers = append(reply.Headers, filter.HeaderField{Name: filter.LowerName(op.GetName()), Value: op.GetValue()})
			}
		}
		f.cb.SendLocalReply(reply)
		return filter.StopIteration
	}
	applyOps(headers, d.GetRequestHeaderOperations())
	st.responseOps = d.GetResponseHeaderOperations()
	return filter.Continue
}

// EncodeHeaders applies the server's response header operations.
func (f *Filter) EncodeHeaders(headers *filter.HeaderMap, endStream bool) filter.Status {
	if f.state != nil {
		applyOps(headers, f.state.responseOps)
	}
	return filter.Continue
}

func applyOps(h *filter.HeaderMap, ops []*mixerv1.HeaderOperation) {
	for _, op := range ops {
		name := filter.LowerName(op.GetName())
		switch op.GetOperation() {
		case mixerv1.HeaderOperation_REPLACE:
			h.Set(name, op.GetValue())
		case mixerv1.HeaderOperation_REMOVE:
			h.Del(name)
		case mixerv1.HeaderOperation_APPEND:
			h.Append(name, op.GetValue())
		}
	}
}

// codeName renders a gRPC code as Istio's denial bodies do
// ("PERMISSION_DENIED").
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		} else {
			b.WriteRune(r - 'a' + 'A')
		}
	}
	return b.String()
}

// requestAttributes adds the connection and request attributes. They are
// set in name order, so that the builder's sort of them is a single pass;
// the header and query maps go into the builder's KVs storage.
func requestAttributes(bd *attributes.Builder, h *filter.HeaderMap, info *filter.StreamInfo, conn filter.ConnectionInfo, direction string) {
	fields := h.Fields()
	rh := readRequestHeaders(fields)
	mtls := info.DownstreamTLS && conn.PeerCertificatePresented
	bd.Set(attributes.ConnectionMTLS, attributes.Bool(mtls))
	if info.RequestedServerName != "" {
		bd.Set(attributes.ConnectionRequestedServerName, attributes.String(info.RequestedServerName))
	}
	protocol := attributes.ProtocolHTTP
	if strings.HasPrefix(rh.contentType, "application/grpc") {
		protocol = attributes.ProtocolGRPC
	}
	bd.Set(attributes.ContextProtocol, attributes.String(protocol))
	if ap := info.DownstreamLocalAddress; ap.IsValid() {
		bd.Set(attributes.DestinationIP, attributes.IPAddress(ap.Addr()))
		bd.Set(attributes.DestinationPort, attributes.Int64(int64(ap.Port())))
	}

	kvs := bd.KVs(len(fields))
	for _, f := range fields {
		kvs = append(kvs, attributes.KV{Key: f.Name, Value: f.Value})
	}
	bd.Set(attributes.RequestHeaders, attributes.StringMapValue(joinRepeated(kvs)))
	setNonEmpty(bd, attributes.RequestHost, rh.authority)
	setNonEmpty(bd, attributes.RequestID, rh.requestID)
	setNonEmpty(bd, attributes.RequestMethod, rh.method)
	path := rh.path
	bd.Set(attributes.RequestPath, attributes.String(path))
	urlPath, query, hasQuery := strings.Cut(path, "?")
	if hasQuery {
		if q, ok := appendQuery(bd.KVs(strings.Count(query, "&")+1), query); ok && len(q) > 0 {
			bd.Set(attributes.RequestQueryParams, attributes.StringMapValue(attributes.NewStringMap(q)))
		}
	}
	setNonEmpty(bd, attributes.RequestReferer, rh.referer)
	scheme := rh.scheme
	if scheme == "" {
		scheme = rh.forwardedProto
	}
	setNonEmpty(bd, attributes.RequestScheme, scheme)
	if rh.contentLength != "" {
		if n, err := strconv.ParseInt(rh.contentLength, 10, 64); err == nil && n >= 0 {
			bd.Set(attributes.RequestSize, attributes.Int64(n))
		}
	}
	if !info.StartTime.IsZero() {
		bd.Set(attributes.RequestTime, attributes.Timestamp(info.StartTime))
	}
	bd.Set(attributes.RequestURLPath, attributes.String(urlPath))
	setNonEmpty(bd, attributes.RequestUserAgent, rh.userAgent)

	if ap := info.DownstreamRemoteAddress; ap.IsValid() {
		bd.Set(attributes.SourceIP, attributes.IPAddress(ap.Addr()))
		bd.Set(attributes.SourcePort, attributes.Int64(int64(ap.Port())))
	}
	if direction == attributes.ReporterInbound && info.DownstreamPeerURISAN != "" {
		// Istio's principals drop the spiffe:// scheme.
		bd.Set(attributes.SourcePrincipal, attributes.String(strings.TrimPrefix(info.DownstreamPeerURISAN, "spiffe://")))
	}
}

// requestHeaders are the request header values requestAttributes reads:
// the first value of each name, as HeaderMap.Get gives it.
type requestHeaders struct {
	authority, method, path, scheme, forwardedProto string
	contentType, contentLength, requestID, referer  string
	userAgent                                       string
}

// readRequestHeaders reads them in one pass over the fields instead of a
// lookup each. It walks backwards, so that of a repeated name the first
// value is the one left.
func readRequestHeaders(fields []filter.HeaderField) requestHeaders {
	var r requestHeaders
	for i := len(fields) - 1; i >= 0; i-- {
		f := &fields[i]
		switch f.Name {
		case filter.HeaderAuthority:
			r.authority = f.Value
		case filter.HeaderMethod:
			r.method = f.Value
		case filter.HeaderPath:
			r.path = f.Value
		case filter.HeaderScheme:
			r.scheme = f.Value
		case "x-forwarded-proto":
			r.forwardedProto = f.Value
		case "content-type":
			r.contentType = f.Value
		case "content-length":
			r.contentLength = f.Value
		case "x-request-id":
			r.requestID = f.Value
		case "referer":
			r.referer = f.Value
		case "user-agent":
			r.userAgent = f.Value
		}
	}
	return r
}

// joinRepeated makes a string map of header fields, joining the values of
// a repeated name with commas, in their order, as HTTP allows.
func joinRepeated(kvs []attributes.KV) attributes.StringMap {
	return attributes.NewStringMap(attributes.JoinRepeated(kvs))
}

// appendQuery appends the parameters of a URL query to kvs as
// url.ParseQuery and its first value per name would give them, and
// reports false where ParseQuery fails (a malformed escape, a semicolon).
// A query without escapes ('%', '+') or semicolons is split here without
// ParseQuery's map; any other goes through ParseQuery.
func appendQuery(kvs []attributes.KV, query string) ([]attributes.KV, bool) {
	if strings.ContainsAny(query, "%+;") || strings.Count(query, "&") >= maxFastQueryParams {
		values, err := url.ParseQuery(query)
		if err != nil {
			return kvs, false
		}
		for k, vs := range values {
			kvs = append(kvs, attributes.KV{Key: k, Value: vs[0]})
		}
		return kvs, true
	}
	first := len(kvs)
	for query != "" {
		var pair string
		pair, query, _ = strings.Cut(query, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if !slices.ContainsFunc(kvs[first:], func(kv attributes.KV) bool { return kv.Key == k }) {
			kvs = append(kvs, attributes.KV{Key: k, Value: v}) // the first value wins
		}
	}
	return kvs, true
}

// maxFastQueryParams bounds the parameters appendQuery splits itself (its
// duplicate check is quadratic); longer queries go through ParseQuery.
const maxFastQueryParams = 32

func setNonEmpty(bd *attributes.Builder, name, v string) {
	if v != "" {
		bd.Set(name, attributes.String(v))
	}
}

// reporter is the filter's access-log handler: it completes the stream's
// bag with the response attributes and queues it for reporting. It is the
// last reader of the stream's Filter and releases it to the pool.
type reporter struct{ c *compiled }

func (r *reporter) Log(info *filter.StreamInfo) {
	f, _ := info.FilterState(stateKey).(*Filter)
	if f == nil {
		return
	}
	if st := &f.st; st.report {
		r.report(info, st)
	}
	// Only the handler of the filter's own config releases it: with two
	// mixer filters in a chain, the later one's state is the one stored,
	// and its handler runs last. Nothing reads the state after that.
	if f.c == r.c {
		info.SetFilterState(stateKey, nil)
		f.release()
	}
}

// report builds the report bag from the check bag and the response (set
// in name order, see requestAttributes) and hands it to the client.
func (r *reporter) report(info *filter.StreamInfo, st *streamState) {
	bd := r.c.client.ReportBuilder(st.bag)
	if st.checked {
		bd.Set(attributes.CheckCacheHit, attributes.Bool(st.cacheHit))
		if st.code != codes.OK {
			bd.Set(attributes.CheckErrorCode, attributes.Int64(int64(st.code)))
		}
		if st.message != "" {
			bd.Set(attributes.CheckErrorMessage, attributes.String(st.message))
		}
	}
	if info.ResponseFlags != 0 {
		bd.Set(attributes.ContextProxyErrorCode, attributes.String(info.ResponseFlags.String()))
	}
	bd.Set(attributes.RequestSize, attributes.Int64(int64(info.BytesReceived)))
	bd.Set(attributes.RequestTotalSize, attributes.Int64(int64(info.BytesReceived)+int64(info.RequestHeaders.ByteSize())))
	bd.Set(attributes.ResponseCode, attributes.Int64(int64(info.ResponseCode)))
	bd.Set(attributes.ResponseDuration, attributes.Duration(info.LastDownstreamTxByteSent))
	if s, ok := grpcStatus(info); ok {
		if m := firstValue(info, "grpc-message"); m != "" {
			bd.Set(attributes.ResponseGRPCMessage, attributes.String(m))
		}
		bd.Set(attributes.ResponseGRPCStatus, attributes.String(s))
	}
	if n := info.ResponseHeaders.Len(); n > 0 {
		kvs := bd.KVs(n)
		for _, f := range info.ResponseHeaders.Fields() {
			kvs = append(kvs, attributes.KV{Key: f.Name, Value: f.Value})
		}
		bd.Set(attributes.ResponseHeaders, attributes.StringMapValue(joinRepeated(kvs)))
	}
	bd.Set(attributes.ResponseSize, attributes.Int64(int64(info.BytesSent)))
	if !info.StartTime.IsZero() {
		bd.Set(attributes.ResponseTime, attributes.Timestamp(info.StartTime.Add(info.LastDownstreamTxByteSent)))
	}
	bd.Set(attributes.ResponseTotalSize, attributes.Int64(int64(info.BytesSent)+int64(info.ResponseHeaders.ByteSize())))
	r.c.client.Report(bd)
}

// grpcStatus returns grpc-status from the trailers, or from the headers of
// a trailers-only response.
func grpcStatus(info *filter.StreamInfo) (string, bool) {
	if v, ok := info.ResponseTrailers.Get("grpc-status"); ok {
		return v, true
	}
	return info.ResponseHeaders.Get("grpc-status")
}

func firstValue(info *filter.StreamInfo, name string) string {
	if v, ok := info.ResponseTrailers.Get(name); ok {
		return v
	}
	return info.ResponseHeaders.Value(name)
}
