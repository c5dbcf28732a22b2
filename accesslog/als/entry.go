package als

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	datav3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/remora-mesh/remora/proxy/filter"
)

// EntryOptions says what HTTPEntry copies beyond the fixed properties. The
// zero value copies no additional headers and no metadata.
type EntryOptions struct {
	// Additional request headers, response headers and response trailers
	// to copy into the entry's header maps. Names must be lower-case (see
	// NewEntryOptions); repeated headers are joined with ",".
	RequestHeaders   []string
	ResponseHeaders  []string
	ResponseTrailers []string
	// MetadataNamespaces lists the dynamic-metadata namespaces copied into
	// common_properties.metadata.filter_metadata (filter.StreamInfo offers
	// lookup by namespace, not iteration).
	MetadataNamespaces []string
}

// NewEntryOptions returns options with the header names lower-cased.
func NewEntryOptions(reqHeaders, respHeaders, respTrailers, metadataNamespaces []string) *EntryOptions {
	lower := func(in []string) []string {
		out := make([]string, len(in))
		for i, h := range in {
			out[i] = strings.ToLower(h)
		}
		return out
	}
	return &EntryOptions{
		RequestHeaders:     lower(reqHeaders),
		ResponseHeaders:    lower(respHeaders),
		ResponseTrailers:   lower(respTrailers),
		MetadataNamespaces: append([]string(nil), metadataNamespaces...),
	}
}

// HTTPEntry converts a finished stream into an Envoy HTTP access-log entry.
// opts may be nil. The result shares no memory with info.
func HTTPEntry(info *filter.StreamInfo, opts *EntryOptions) *datav3.HTTPAccessLogEntry {
	if opts == nil {
		opts = &EntryOptions{}
	}
	a := newArena(arenaSize(info))
	e := &datav3.HTTPAccessLogEntry{
		CommonProperties: common(info, opts.MetadataNamespaces, a),
		ProtocolVersion:  httpVersion(info.Protocol),
	}
	req := &datav3.HTTPRequestProperties{
		RequestBodyBytes: info.BytesReceived,
	}
	if h := info.RequestHeaders; h != nil {
		req.RequestMethod = method(h.Method())
		req.Scheme = a.str(h.Scheme())
		req.Authority = a.str(h.Authority())
		req.Path = a.str(h.Path())
		req.UserAgent = a.str(h.Value("user-agent"))
		req.Referer = a.str(h.Value("referer"))
		req.ForwardedFor = a.str(h.Value("x-forwarded-for"))
		req.RequestId = a.str(h.Value("x-request-id"))
		req.OriginalPath = a.str(h.Value("x-envoy-original-path"))
		req.RequestHeadersBytes = headerBytes(h)
		req.RequestHeaders = headerMap(h, opts.RequestHeaders, a)
		if port, ok := authorityPort(h.Authority()); ok {
			req.Port = wrapperspb.UInt32(port)
		}
	}
	e.Request = req
	resp := &datav3.HTTPResponseProperties{
		ResponseBodyBytes:   info.BytesSent,
		ResponseCodeDetails: a.str(info.ResponseCodeDetails),
	}
	if info.ResponseCode != 0 {
		resp.ResponseCode = wrapperspb.UInt32(uint32(info.ResponseCode))
	}
	if h := info.ResponseHeaders; h != nil {
		resp.ResponseHeadersBytes = headerBytes(h)
		resp.ResponseHeaders = headerMap(h, opts.ResponseHeaders, a)
	}
	if h := info.ResponseTrailers; h != nil {
		resp.ResponseTrailers = headerMap(h, opts.ResponseTrailers, a)
	}
	e.Response = resp
	return e
}

// TCPEntry converts a finished TCP proxy connection (a StreamInfo without
// an HTTP protocol) into an Envoy TCP access-log entry. opts may be nil;
// only its MetadataNamespaces apply. The result shares no memory with info.
func TCPEntry(info *filter.StreamInfo, opts *EntryOptions) *datav3.TCPAccessLogEntry {
	var ns []string
	if opts != nil {
		ns = opts.MetadataNamespaces
	}
	return &datav3.TCPAccessLogEntry{
		CommonProperties: common(info, ns, newArena(arenaSize(info))),
		ConnectionProperties: &datav3.ConnectionProperties{
			ReceivedBytes: info.BytesReceived,
			SentBytes:     info.BytesSent,
		},
	}
}

// Common converts the properties shared by HTTP and TCP entries.
func Common(info *filter.StreamInfo, metadataNamespaces []string) *datav3.AccessLogCommon {
	return common(info, metadataNamespaces, newArena(arenaSize(info)))
}

func common(info *filter.StreamInfo, metadataNamespaces []string, a *arena) *datav3.AccessLogCommon {
	c := &datav3.AccessLogCommon{
		SampleRate:                     1,
		DownstreamRemoteAddress:        socketAddress(info.DownstreamRemoteAddress),
		DownstreamLocalAddress:         socketAddress(info.DownstreamLocalAddress),
		DownstreamDirectRemoteAddress:  socketAddress(info.DownstreamDirectRemoteAddress),
		UpstreamRemoteAddress:          parseAddress(info.UpstreamHost, a),
		UpstreamLocalAddress:           parseAddress(info.UpstreamLocalAddress, a),
		UpstreamCluster:                a.str(info.UpstreamCluster),
		UpstreamTransportFailureReason: a.str(info.UpstreamTransportFailureReason),
		RouteName:                      a.str(info.RouteName),
		TimeToLastRxByte:               dur(info.LastDownstreamRxByteReceived),
		TimeToFirstUpstreamTxByte:      dur(info.FirstUpstreamTxByteSent),
		TimeToLastUpstreamTxByte:       dur(info.LastUpstreamTxByteSent),
		TimeToFirstUpstreamRxByte:      dur(info.FirstUpstreamRxByteReceived),
		TimeToLastUpstreamRxByte:       dur(info.LastUpstreamRxByteReceived),
		TimeToFirstDownstreamTxByte:    dur(info.FirstDownstreamTxByteSent),
		TimeToLastDownstreamTxByte:     dur(info.LastDownstreamTxByteSent),
		Duration:                       dur(info.Duration()),
		ResponseFlags:                  ResponseFlags(info.ResponseFlags),
	}
	if !info.StartTime.IsZero() {
		c.StartTime = timestamppb.New(info.StartTime)
	}
	if info.DownstreamTLS {
		tls := &datav3.TLSProperties{TlsSniHostname: a.str(info.RequestedServerName)}
		if info.DownstreamPeerURISAN != "" {
			tls.PeerCertificateProperties = &datav3.TLSProperties_CertificateProperties{
				SubjectAltName: []*datav3.TLSProperties_CertificateProperties_SubjectAltName{
					{San: &datav3.TLSProperties_CertificateProperties_SubjectAltName_Uri{Uri: a.str(info.DownstreamPeerURISAN)}},
				},
			}
		}
		c.TlsProperties = tls
	}
	for _, ns := range metadataNamespaces {
		kv := info.DynamicMetadataNamespace(ns)
		if len(kv) == 0 {
			continue
		}
		s, err := structpb.NewStruct(kv)
		if err != nil {
			// A value of a type Struct cannot hold: keep the others.
			s = &structpb.Struct{Fields: map[string]*structpb.Value{}}
			for k, v := range kv {
				if pv, err := structpb.NewValue(v); err == nil {
					s.Fields[k] = pv
				}
			}
		}
		if c.Metadata == nil {
			c.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
		}
		c.Metadata.FilterMetadata[ns] = s
	}
	return c
}

// ResponseFlags maps Remora's response flags to the proto's booleans. DO
// (drop overload) has no field in envoy.data.accesslog.v3 and is not
// carried.
func ResponseFlags(f filter.ResponseFlags) *datav3.ResponseFlags {
	if f == 0 {
		return nil
	}
	r := &datav3.ResponseFlags{
		FailedLocalHealthcheck:           f&filter.FailedLocalHealthCheck != 0,
		NoHealthyUpstream:                f&filter.NoHealthyUpstream != 0,
		UpstreamRequestTimeout:           f&filter.UpstreamRequestTimeout != 0,
		LocalReset:                       f&filter.LocalReset != 0,
		UpstreamRemoteReset:              f&filter.UpstreamRemoteReset != 0,
		UpstreamConnectionFailure:        f&filter.UpstreamConnectionFailure != 0,
		UpstreamConnectionTermination:    f&filter.UpstreamConnectionTermination != 0,
		UpstreamOverflow:                 f&filter.UpstreamOverflow != 0,
		NoRouteFound:                     f&filter.NoRouteFound != 0,
		DelayInjected:                    f&filter.DelayInjected != 0,
		FaultInjected:                    f&filter.FaultInjected != 0,
		RateLimited:                      f&filter.RateLimited != 0,
		RateLimitServiceError:            f&filter.RateLimitServiceError != 0,
		DownstreamConnectionTermination:  f&filter.DownstreamConnectionTermination != 0,
		UpstreamRetryLimitExceeded:       f&filter.UpstreamRetryLimitExceeded != 0,
		StreamIdleTimeout:                f&filter.StreamIdleTimeout != 0,
		InvalidEnvoyRequestHeaders:       f&filter.InvalidEnvoyRequestHeaders != 0,
		DownstreamProtocolError:          f&filter.DownstreamProtocolError != 0,
		UpstreamMaxStreamDurationReached: f&filter.UpstreamMaxStreamDurationReached != 0,
		ResponseFromCacheFilter:          f&filter.ResponseFromCacheFilter != 0,
		NoFilterConfigFound:              f&filter.NoFilterConfigFound != 0,
		DurationTimeout:                  f&filter.DurationTimeout != 0,
		UpstreamProtocolError:            f&filter.UpstreamProtocolError != 0,
		NoClusterFound:                   f&filter.NoClusterFound != 0,
		OverloadManager:                  f&filter.OverloadManager != 0,
		DnsResolutionFailure:             f&filter.DNSResolutionFailed != 0,
	}
	if f&filter.UnauthorizedExternalService != 0 {
		r.UnauthorizedDetails = &datav3.ResponseFlags_Unauthorized{Reason: datav3.ResponseFlags_Unauthorized_EXTERNAL_SERVICE}
	}
	return r
}

func httpVersion(p string) datav3.HTTPAccessLogEntry_HTTPVersion {
	switch p {
	case filter.ProtocolHTTP10:
		return datav3.HTTPAccessLogEntry_HTTP10
	case filter.ProtocolHTTP11:
		return datav3.HTTPAccessLogEntry_HTTP11
	case filter.ProtocolHTTP2:
		return datav3.HTTPAccessLogEntry_HTTP2
	}
	return datav3.HTTPAccessLogEntry_PROTOCOL_UNSPECIFIED
}

func method(m string) corev3.RequestMethod {
	if v, ok := corev3.RequestMethod_value[m]; ok && m != "METHOD_UNSPECIFIED" {
		return corev3.RequestMethod(v)
	}
	return corev3.RequestMethod_METHOD_UNSPECIFIED
}

// arena copies the strings an entry takes from the StreamInfo into one
// allocation, so that the entry neither pins nor sees the stream's reused
// header storage. Its buffer is sized up front and never grows, so the
// strings it hands out stay valid and immutable.
type arena struct{ b []byte }

func newArena(n int) *arena { return &arena{b: make([]byte, 0, n)} }

func (a *arena) str(s string) string {
	if s == "" {
		return ""
	}
	if len(a.b)+len(s) > cap(a.b) {
		return strings.Clone(s) // not sized for it: copy on its own
	}
	start := len(a.b)
	a.b = append(a.b, s...)
	return unsafe.String(&a.b[start], len(s))
}

// arenaSize bounds the bytes HTTPEntry copies from info.
func arenaSize(info *filter.StreamInfo) int {
	n := len(info.ResponseCodeDetails) + len(info.UpstreamCluster) + len(info.UpstreamTransportFailureReason) +
		len(info.RouteName) + len(info.RequestedServerName) + len(info.DownstreamPeerURISAN) +
		len(info.UpstreamHost) + len(info.UpstreamLocalAddress)
	for _, h := range []*filter.HeaderMap{info.RequestHeaders, info.ResponseHeaders, info.ResponseTrailers} {
		for _, f := range h.Fields() {
			n += len(f.Value) + 1 // values, and a separator when joined
		}
	}
	return n
}

func dur(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

func socketAddress(ap netip.AddrPort) *corev3.Address {
	if !ap.Addr().IsValid() {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ap.Addr().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}

// parseAddress converts "ip:port"; anything else is carried as the
// address with no port.
func parseAddress(s string, a *arena) *corev3.Address {
	if s == "" {
		return nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return socketAddress(ap)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: a.str(s)}}}
}

// headerBytes is Envoy's HeaderMap::byteSize: the sum of names and values.
func headerBytes(h *filter.HeaderMap) uint64 {
	var n uint64
	for _, f := range h.Fields() {
		n += uint64(len(f.Name) + len(f.Value))
	}
	return n
}

func headerMap(h *filter.HeaderMap, names []string, a *arena) map[string]string {
	if len(names) == 0 {
		return nil
	}
	var m map[string]string
	var vals []string
	for _, n := range names {
		vals = h.Values(vals[:0], n)
		if len(vals) == 0 {
			continue
		}
		if m == nil {
			m = make(map[string]string, len(names))
		}
		if len(vals) == 1 {
			m[n] = a.str(vals[0])
		} else {
			m[n] = strings.Join(vals, ",") // copies
		}
	}
	return m
}

// authorityPort returns the explicit port of an authority ("host:8443",
// "[::1]:80").
func authorityPort(a string) (uint32, bool) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return 0, false
	}
	if host := a[:i]; strings.Contains(host, ":") && !strings.HasSuffix(host, "]") {
		return 0, false // a bare IPv6 address
	}
	p, err := strconv.ParseUint(a[i+1:], 10, 16)
	if err != nil {
		return 0, false
	}
	return uint32(p), true
}
