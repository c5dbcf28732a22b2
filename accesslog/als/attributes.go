package als

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	datav3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/proxy/filter"
)

// ErrSkipped is returned for entries that are valid but describe no
// finished request or connection (Envoy's periodic, start-of-stream and
// upstream-attempt logs): counting them would count a request twice.
var ErrSkipped = errors.New("als: not a final entry")

// Node metadata keys read by NewIdentity. They are the keys Istio's
// sidecars set in their bootstrap node metadata.
const (
	MetadataWorkloadName = "WORKLOAD_NAME"
	MetadataNamespace    = "NAMESPACE"
	MetadataLabels       = "LABELS"
	// MetadataReporterKind ("inbound" or "outbound") is a Remora key for
	// proxies whose access logs all come from one side.
	MetadataReporterKind = "REPORTER_KIND"
)

// Identity is what a stream's identifier says about the proxy that sent
// its entries, as attributes added to every entry's bag. Build it once per
// stream with NewIdentity; it is immutable and safe for concurrent use.
type Identity struct {
	// Kind is the context.reporter.kind of the entries.
	Kind string
	bag  attributes.Bag
	drop []string
}

// NewIdentity interprets a stream identifier (nil when the stream sent
// none). defaultKind is the reporter kind used when neither the log name
// nor the node says: a log name beginning with "inbound" or "outbound"
// decides first, then the node's REPORTER_KIND metadata.
//
// The node id becomes context.reporter.uid. The node's WORKLOAD_NAME,
// NAMESPACE and LABELS (string values only) describe the reporting
// workload: the destination of inbound entries, the source of outbound
// ones. extra is merged last and overrides everything (the server puts
// the caller's verified identity there); the names in drop are removed
// from every bag.
func NewIdentity(id *alsv3.StreamAccessLogsMessage_Identifier, defaultKind string, extra attributes.Bag, drop ...string) *Identity {
	node := id.GetNode()
	md := node.GetMetadata().GetFields()
	kind := reporterKind(id.GetLogName(), md[MetadataReporterKind].GetStringValue(), defaultKind)
	bd := attributes.NewBuilder(8 + extra.Len())
	set := func(name, v string) {
		if v != "" {
			bd.Set(name, attributes.String(v))
		}
	}
	set(attributes.ContextReporterKind, kind)
	set(attributes.ContextReporterUID, node.GetId())
	workload, ns := md[MetadataWorkloadName].GetStringValue(), md[MetadataNamespace].GetStringValue()
	labels := stringLabels(md[MetadataLabels].GetStructValue())
	if kind == attributes.ReporterOutbound {
		set(attributes.SourceWorkloadName, workload)
		set(attributes.SourceWorkloadNamespace, ns)
		set(attributes.SourceNamespace, ns)
		if labels.Len() > 0 {
			bd.Set(attributes.SourceLabels, attributes.StringMapValue(labels))
		}
	} else {
		set(attributes.DestinationWorkloadName, workload)
		set(attributes.DestinationWorkloadNamespace, ns)
		set(attributes.DestinationNamespace, ns)
		if labels.Len() > 0 {
			bd.Set(attributes.DestinationLabels, attributes.StringMapValue(labels))
		}
	}
	bd.Merge(extra)
	return &Identity{Kind: kind, bag: bd.Build(), drop: drop}
}

func reporterKind(logName, fromNode, def string) string {
	switch {
	case hasPrefixFold(logName, attributes.ReporterOutbound):
		return attributes.ReporterOutbound
	case hasPrefixFold(logName, attributes.ReporterInbound):
		return attributes.ReporterInbound
	case fromNode == attributes.ReporterInbound || fromNode == attributes.ReporterOutbound:
		return fromNode
	case def == attributes.ReporterOutbound:
		return def
	}
	return attributes.ReporterInbound
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func stringLabels(s *structpb.Struct) attributes.StringMap {
	f := s.GetFields()
	if len(f) == 0 {
		return attributes.StringMap{}
	}
	kvs := make([]attributes.KV, 0, len(f))
	for k, v := range f {
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			kvs = append(kvs, attributes.KV{Key: k, Value: sv.StringValue})
		}
	}
	return attributes.NewStringMap(kvs)
}

// collector gathers an entry's attributes before they become a bag:
// appending is O(1), and build hands them to the Builder in name order, so
// that its sort finds them sorted (sorting 100-byte entries with pointers,
// and the write barriers of the moves, cost half the conversion before).
// Collectors are pooled; a collector is used by one goroutine at a time.
type collector struct {
	pairs []pair
	idx   []int32
}

type pair struct {
	name string
	v    attributes.Value
}

// entryAttrs bounds the attributes an entry yields (an HTTP entry with
// every field set gives 38) plus an identity's.
const entryAttrs = 56

var collectors = sync.Pool{New: func() any {
	return &collector{pairs: make([]pair, 0, entryAttrs), idx: make([]int32, 0, entryAttrs)}
}}

func getCollector() *collector { return collectors.Get().(*collector) }

func (c *collector) release() {
	clear(c.pairs) // do not pin the entry's strings
	c.pairs, c.idx = c.pairs[:0], c.idx[:0]
	collectors.Put(c)
}

// Set records name = v; a later Set of the same name wins.
func (c *collector) Set(name string, v attributes.Value) { c.pairs = append(c.pairs, pair{name, v}) }

// build returns the bag of the collected attributes, without the names
// id drops, plus id's attributes (which win).
func (c *collector) build(id *Identity) attributes.Bag {
	entryN := len(c.pairs)
	if id != nil {
		for name, v := range id.bag.All() {
			c.Set(name, v)
		}
	}
	for i := range c.pairs {
		c.idx = append(c.idx, int32(i))
	}
	slices.SortFunc(c.idx, func(a, b int32) int {
		if n := strings.Compare(c.pairs[a].name, c.pairs[b].name); n != 0 {
			return n
		}
		return int(a - b) // equal names keep their order
	})
	bd := attributes.NewBuilder(len(c.idx))
	for k, i := range c.idx {
		p := &c.pairs[i]
		if k+1 < len(c.idx) && c.pairs[c.idx[k+1]].name == p.name {
			continue // a later value of the name wins
		}
		if int(i) < entryN && id != nil && slices.Contains(id.drop, p.name) {
			continue
		}
		bd.Set(p.name, p.v)
	}
	return bd.Build()
}

// HTTPAttributes converts an Envoy HTTP access-log entry into the
// attribute bag a Report of the same request carries. id may be nil (no
// identity: reporter kind inbound). It returns ErrSkipped for entries
// that are not the end of a downstream request, and an error naming the
// field for a malformed entry. The bag shares no memory with e except
// immutable strings.
func HTTPAttributes(e *datav3.HTTPAccessLogEntry, id *Identity) (attributes.Bag, error) {
	if e == nil {
		return attributes.Bag{}, errors.New("als: http entry: missing")
	}
	c := e.GetCommonProperties()
	switch c.GetAccessLogType() {
	case datav3.AccessLogType_NotSet, datav3.AccessLogType_DownstreamEnd:
		//lint:ignore SA1019 older Envoys mark intermediate entries with this flag.
		if c.GetIntermediateLogEntry() {
			return attributes.Bag{}, ErrSkipped
		}
	default:
		return attributes.Bag{}, ErrSkipped
	}
	bd := getCollector()
	defer bd.release()
	kind := identityKind(id)
	start, err := commonAttrs(bd, c, kind)
	if err != nil {
		return attributes.Bag{}, fmt.Errorf("als: http entry: %w", err)
	}
	if err := request(bd, e.GetRequest(), e.GetProtocolVersion()); err != nil {
		return attributes.Bag{}, fmt.Errorf("als: http entry: %w", err)
	}
	reqH, respH := e.GetRequest().GetRequestHeaders(), e.GetResponse().GetResponseHeaders()
	if err := response(bd, e.GetResponse()); err != nil {
		return attributes.Bag{}, fmt.Errorf("als: http entry: %w", err)
	}
	d, err := optDuration(c.GetTimeToLastDownstreamTxByte(), "common_properties.time_to_last_downstream_tx_byte")
	if err != nil {
		return attributes.Bag{}, fmt.Errorf("als: http entry: %w", err)
	}
	if d == 0 {
		if d, err = optDuration(c.GetDuration(), "common_properties.duration"); err != nil {
			return attributes.Bag{}, fmt.Errorf("als: http entry: %w", err)
		}
	}
	bd.Set(attributes.ResponseDuration, attributes.Duration(d))
	if !start.IsZero() {
		bd.Set(attributes.ResponseTime, attributes.Timestamp(start.Add(d)))
	}
	protocol := attributes.ProtocolHTTP
	if isGRPC(reqH["content-type"]) || isGRPC(respH["content-type"]) {
		protocol = attributes.ProtocolGRPC
	}
	bd.Set(attributes.ContextProtocol, attributes.String(protocol))
	return bd.build(id), nil
}

// TCPAttributes converts an Envoy TCP access-log entry into the attribute
// bag of a TCP connection report: connection.event "close" for the end of
// a connection (TcpConnectionEnd or an unset type), "open" for
// TcpConnectionStart; other types are ErrSkipped.
func TCPAttributes(e *datav3.TCPAccessLogEntry, id *Identity) (attributes.Bag, error) {
	if e == nil {
		return attributes.Bag{}, errors.New("als: tcp entry: missing")
	}
	c := e.GetCommonProperties()
	event := "close"
	switch c.GetAccessLogType() {
	case datav3.AccessLogType_NotSet, datav3.AccessLogType_TcpConnectionEnd:
		//lint:ignore SA1019 older Envoys mark intermediate entries with this flag.
		if c.GetIntermediateLogEntry() {
			return attributes.Bag{}, ErrSkipped
		}
	case datav3.AccessLogType_TcpConnectionStart:
		event = "open"
	default:
		return attributes.Bag{}, ErrSkipped
	}
	bd := getCollector()
	defer bd.release()
	if _, err := commonAttrs(bd, c, identityKind(id)); err != nil {
		return attributes.Bag{}, fmt.Errorf("als: tcp entry: %w", err)
	}
	bd.Set(attributes.ContextProtocol, attributes.String(attributes.ProtocolTCP))
	bd.Set(attributes.ConnectionEvent, attributes.String(event))
	if event == "close" {
		cp := e.GetConnectionProperties()
		rx, err := size(cp.GetReceivedBytes(), "connection_properties.received_bytes")
		if err != nil {
			return attributes.Bag{}, fmt.Errorf("als: tcp entry: %w", err)
		}
		tx, err := size(cp.GetSentBytes(), "connection_properties.sent_bytes")
		if err != nil {
			return attributes.Bag{}, fmt.Errorf("als: tcp entry: %w", err)
		}
		bd.Set(attributes.ConnectionReceivedBytes, attributes.Int64(rx))
		bd.Set(attributes.ConnectionReceivedBytesTotal, attributes.Int64(rx))
		bd.Set(attributes.ConnectionSentBytes, attributes.Int64(tx))
		bd.Set(attributes.ConnectionSentBytesTotal, attributes.Int64(tx))
		d, err := optDuration(c.GetDuration(), "common_properties.duration")
		if err != nil {
			return attributes.Bag{}, fmt.Errorf("als: tcp entry: %w", err)
		}
		bd.Set(attributes.ConnectionDuration, attributes.Duration(d))
	}
	return bd.build(id), nil
}

func identityKind(id *Identity) string {
	if id == nil {
		return attributes.ReporterInbound
	}
	return id.Kind
}

// commonAttrs sets the attributes of AccessLogCommon and returns the start time
// (zero when absent).
func commonAttrs(bd *collector, c *datav3.AccessLogCommon, kind string) (time.Time, error) {
	var start time.Time
	if ts := c.GetStartTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return start, fmt.Errorf("common_properties.start_time: %w", err)
		}
		start = ts.AsTime()
		bd.Set(attributes.RequestTime, attributes.Timestamp(start))
	}
	if err := address(bd, c.GetDownstreamRemoteAddress(), attributes.SourceIP, attributes.SourcePort, "common_properties.downstream_remote_address"); err != nil {
		return start, err
	}
	if err := address(bd, c.GetDownstreamLocalAddress(), attributes.DestinationIP, attributes.DestinationPort, "common_properties.downstream_local_address"); err != nil {
		return start, err
	}
	tls := c.GetTlsProperties()
	mtls := false
	if peer := tls.GetPeerCertificateProperties(); peer != nil {
		mtls = len(peer.GetSubjectAltName()) > 0 || peer.GetSubject() != ""
		if kind == attributes.ReporterInbound {
			for _, san := range peer.GetSubjectAltName() {
				if uri := san.GetUri(); uri != "" {
					// Istio's principals drop the spiffe:// scheme.
					bd.Set(attributes.SourcePrincipal, attributes.String(strings.TrimPrefix(uri, "spiffe://")))
					break
				}
			}
		}
	}
	bd.Set(attributes.ConnectionMTLS, attributes.Bool(mtls))
	if sni := tls.GetTlsSniHostname(); sni != "" {
		bd.Set(attributes.ConnectionRequestedServerName, attributes.String(sni))
	}
	if f := c.GetResponseFlags(); f != nil {
		if s := responseFlagString(f); s != "" {
			bd.Set(attributes.ContextProxyErrorCode, attributes.String(s))
		}
	}
	upstreamCluster(bd, c.GetUpstreamCluster(), kind)
	return start, nil
}

// upstreamCluster derives the destination service from the upstream
// cluster: Istio's "outbound|port|subset|host" names give the host (and
// from a Kubernetes "name.namespace.svc..." host its name and namespace);
// another cluster name is the destination.service.name of an outbound
// entry (an inbound entry's cluster is the local application).
func upstreamCluster(bd *collector, cluster, kind string) {
	if cluster == "" {
		return
	}
	if dir, rest, ok := strings.Cut(cluster, "|"); ok {
		parts := strings.SplitN(rest, "|", 3)
		if len(parts) != 3 || (dir != "outbound" && dir != "inbound") || parts[2] == "" {
			return
		}
		host := parts[2]
		bd.Set(attributes.DestinationServiceHost, attributes.String(host))
		name, after, _ := strings.Cut(host, ".")
		bd.Set(attributes.DestinationServiceName, attributes.String(name))
		if ns, after, ok := strings.Cut(after, "."); ok && ns != "" && strings.HasPrefix(after, "svc") {
			bd.Set(attributes.DestinationServiceNamespace, attributes.String(ns))
		}
		return
	}
	if kind == attributes.ReporterOutbound {
		bd.Set(attributes.DestinationServiceName, attributes.String(cluster))
	}
}

// address sets ip and port from a socket address. Pipe and internal
// addresses have no IP and set nothing; a socket address that is not an
// IP literal is malformed.
func address(bd *collector, a *corev3.Address, ipAttr, portAttr, path string) error {
	sa := a.GetSocketAddress()
	if sa == nil {
		return nil
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return fmt.Errorf("%s: address %q is not an IP address", path, sa.GetAddress())
	}
	bd.Set(ipAttr, attributes.IPAddress(ip))
	if p, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue); ok {
		if p.PortValue > 65535 {
			return fmt.Errorf("%s: port %d out of range", path, p.PortValue)
		}
		bd.Set(portAttr, attributes.Int64(int64(p.PortValue)))
	}
	return nil
}

func request(bd *collector, r *datav3.HTTPRequestProperties, v datav3.HTTPAccessLogEntry_HTTPVersion) error {
	if r == nil {
		return nil
	}
	if m := r.GetRequestMethod(); m != corev3.RequestMethod_METHOD_UNSPECIFIED {
		name, ok := corev3.RequestMethod_name[int32(m)]
		if !ok {
			return fmt.Errorf("request.request_method: unknown method %d", m)
		}
		bd.Set(attributes.RequestMethod, attributes.String(name))
	}
	setNonEmpty(bd, attributes.RequestScheme, r.GetScheme())
	setNonEmpty(bd, attributes.RequestHost, r.GetAuthority())
	if p := r.GetPath(); p != "" {
		bd.Set(attributes.RequestPath, attributes.String(p))
		urlPath, _, _ := strings.Cut(p, "?")
		bd.Set(attributes.RequestURLPath, attributes.String(urlPath))
	}
	setNonEmpty(bd, attributes.RequestUserAgent, r.GetUserAgent())
	setNonEmpty(bd, attributes.RequestReferer, r.GetReferer())
	setNonEmpty(bd, attributes.RequestID, r.GetRequestId())
	if h := r.GetRequestHeaders(); len(h) > 0 {
		bd.Set(attributes.RequestHeaders, attributes.StringMapValue(attributes.StringMapOf(h)))
	}
	body, err := size(r.GetRequestBodyBytes(), "request.request_body_bytes")
	if err != nil {
		return err
	}
	hdr, err := size(r.GetRequestHeadersBytes(), "request.request_headers_bytes")
	if err != nil {
		return err
	}
	bd.Set(attributes.RequestSize, attributes.Int64(body))
	bd.Set(attributes.RequestTotalSize, attributes.Int64(body+hdr))
	switch v {
	case datav3.HTTPAccessLogEntry_HTTP10:
		bd.Set(attributes.RequestProtocol, attributes.String(filter.ProtocolHTTP10))
	case datav3.HTTPAccessLogEntry_HTTP11:
		bd.Set(attributes.RequestProtocol, attributes.String(filter.ProtocolHTTP11))
	case datav3.HTTPAccessLogEntry_HTTP2:
		bd.Set(attributes.RequestProtocol, attributes.String(filter.ProtocolHTTP2))
	case datav3.HTTPAccessLogEntry_HTTP3:
		bd.Set(attributes.RequestProtocol, attributes.String("HTTP/3"))
	}
	return nil
}

func response(bd *collector, r *datav3.HTTPResponseProperties) error {
	if r == nil {
		return nil
	}
	if c := r.GetResponseCode(); c != nil {
		if c.GetValue() > 999 {
			return fmt.Errorf("response.response_code: %d is not an HTTP status", c.GetValue())
		}
		bd.Set(attributes.ResponseCode, attributes.Int64(int64(c.GetValue())))
	}
	if h := r.GetResponseHeaders(); len(h) > 0 {
		bd.Set(attributes.ResponseHeaders, attributes.StringMapValue(attributes.StringMapOf(h)))
	}
	body, err := size(r.GetResponseBodyBytes(), "response.response_body_bytes")
	if err != nil {
		return err
	}
	hdr, err := size(r.GetResponseHeadersBytes(), "response.response_headers_bytes")
	if err != nil {
		return err
	}
	bd.Set(attributes.ResponseSize, attributes.Int64(body))
	bd.Set(attributes.ResponseTotalSize, attributes.Int64(body+hdr))
	tr, h := r.GetResponseTrailers(), r.GetResponseHeaders()
	if s, ok := tr["grpc-status"]; ok {
		bd.Set(attributes.ResponseGRPCStatus, attributes.String(s))
		setNonEmpty(bd, attributes.ResponseGRPCMessage, tr["grpc-message"])
	} else if s, ok := h["grpc-status"]; ok {
		bd.Set(attributes.ResponseGRPCStatus, attributes.String(s))
		setNonEmpty(bd, attributes.ResponseGRPCMessage, h["grpc-message"])
	}
	return nil
}

// maxSize bounds byte counts so that sums of two stay in int64.
const maxSize = 1 << 62

func size(n uint64, path string) (int64, error) {
	if n > maxSize {
		return 0, fmt.Errorf("%s: %d out of range", path, n)
	}
	return int64(n), nil
}

// optDuration returns d (0 when absent); a negative or invalid duration
// is malformed.
func optDuration(d *durationpb.Duration, path string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if d.GetSeconds() < 0 || d.GetNanos() < 0 {
		return 0, fmt.Errorf("%s: negative duration", path)
	}
	return d.AsDuration(), nil
}

func setNonEmpty(bd *collector, name, v string) {
	if v != "" {
		bd.Set(name, attributes.String(v))
	}
}

func isGRPC(contentType string) bool { return strings.HasPrefix(contentType, "application/grpc") }

// EntryFlags converts the proto's response flags to Remora's. DR
// (downstream remote reset) has no Remora flag and is reported by the
// second result.
func EntryFlags(f *datav3.ResponseFlags) (flags filter.ResponseFlags, downstreamRemoteReset bool) {
	if f == nil {
		return 0, false
	}
	set := func(on bool, fl filter.ResponseFlags) {
		if on {
			flags |= fl
		}
	}
	set(f.GetFailedLocalHealthcheck(), filter.FailedLocalHealthCheck)
	set(f.GetNoHealthyUpstream(), filter.NoHealthyUpstream)
	set(f.GetUpstreamRequestTimeout(), filter.UpstreamRequestTimeout)
	set(f.GetLocalReset(), filter.LocalReset)
	set(f.GetUpstreamRemoteReset(), filter.UpstreamRemoteReset)
	set(f.GetUpstreamConnectionFailure(), filter.UpstreamConnectionFailure)
	set(f.GetUpstreamConnectionTermination(), filter.UpstreamConnectionTermination)
	set(f.GetUpstreamOverflow(), filter.UpstreamOverflow)
	set(f.GetNoRouteFound(), filter.NoRouteFound)
	set(f.GetDelayInjected(), filter.DelayInjected)
	set(f.GetFaultInjected(), filter.FaultInjected)
	set(f.GetRateLimited(), filter.RateLimited)
	set(f.GetUnauthorizedDetails() != nil, filter.UnauthorizedExternalService)
	set(f.GetRateLimitServiceError(), filter.RateLimitServiceError)
	set(f.GetDownstreamConnectionTermination(), filter.DownstreamConnectionTermination)
	set(f.GetUpstreamRetryLimitExceeded(), filter.UpstreamRetryLimitExceeded)
	set(f.GetStreamIdleTimeout(), filter.StreamIdleTimeout)
	set(f.GetInvalidEnvoyRequestHeaders(), filter.InvalidEnvoyRequestHeaders)
	set(f.GetDownstreamProtocolError(), filter.DownstreamProtocolError)
	set(f.GetUpstreamMaxStreamDurationReached(), filter.UpstreamMaxStreamDurationReached)
	set(f.GetResponseFromCacheFilter(), filter.ResponseFromCacheFilter)
	set(f.GetNoFilterConfigFound(), filter.NoFilterConfigFound)
	set(f.GetDurationTimeout(), filter.DurationTimeout)
	set(f.GetUpstreamProtocolError(), filter.UpstreamProtocolError)
	set(f.GetNoClusterFound(), filter.NoClusterFound)
	set(f.GetOverloadManager(), filter.OverloadManager)
	set(f.GetDnsResolutionFailure(), filter.DNSResolutionFailed)
	return flags, f.GetDownstreamRemoteReset()
}

// responseFlagString renders the flags as Envoy's %RESPONSE_FLAGS%
// (short names in Envoy's order, comma-joined), "" when none is set.
func responseFlagString(f *datav3.ResponseFlags) string {
	flags, dr := EntryFlags(f)
	switch {
	case flags == 0 && !dr:
		return ""
	case flags == 0:
		return "DR"
	case dr:
		return flags.String() + ",DR"
	}
	return flags.String()
}
