package als

import (
	"net/netip"
	"sort"
	"time"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	datav3 "github.com/remora-mesh/remora/proto/envoy/data/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/remora-mesh/remora/proxy/filter"
)

// HTTPStreamInfo fills info from an HTTP entry, the reverse of HTTPEntry,
// so that an access-log file sink's format strings can render entries
// received from another proxy. Only the logged headers exist: the request
// header map holds the pseudo-headers rebuilt from the request properties
// (:method, :path, :authority, :scheme), user-agent, referer,
// x-forwarded-for, x-request-id and x-envoy-original-path, plus the entry's
// additional request headers. Call it on an entry HTTPAttributes accepted;
// malformed values are left out rather than reported.
func HTTPStreamInfo(e *datav3.HTTPAccessLogEntry, info *filter.StreamInfo) {
	*info = filter.StreamInfo{}
	commonInfo(e.GetCommonProperties(), info)
	switch e.GetProtocolVersion() {
	case datav3.HTTPAccessLogEntry_HTTP10:
		info.Protocol = filter.ProtocolHTTP10
	case datav3.HTTPAccessLogEntry_HTTP11:
		info.Protocol = filter.ProtocolHTTP11
	case datav3.HTTPAccessLogEntry_HTTP2:
		info.Protocol = filter.ProtocolHTTP2
	case datav3.HTTPAccessLogEntry_HTTP3:
		info.Protocol = "HTTP/3"
	}
	r := e.GetRequest()
	h := filter.NewHeaderMap()
	add := func(name, v string) {
		if v != "" {
			h.Add(name, v)
		}
	}
	if m := r.GetRequestMethod(); m != corev3.RequestMethod_METHOD_UNSPECIFIED {
		if name, ok := corev3.RequestMethod_name[int32(m)]; ok {
			add(filter.HeaderMethod, name)
		}
	}
	add(filter.HeaderPath, r.GetPath())
	add(filter.HeaderAuthority, r.GetAuthority())
	add(filter.HeaderScheme, r.GetScheme())
	add("user-agent", r.GetUserAgent())
	add("referer", r.GetReferer())
	add("x-forwarded-for", r.GetForwardedFor())
	add("x-request-id", r.GetRequestId())
	add("x-envoy-original-path", r.GetOriginalPath())
	addSorted(h, r.GetRequestHeaders())
	info.RequestHeaders = h
	info.BytesReceived = r.GetRequestBodyBytes()

	resp := e.GetResponse()
	if c := resp.GetResponseCode(); c != nil && c.GetValue() <= 999 {
		info.ResponseCode = int(c.GetValue())
	}
	info.ResponseCodeDetails = resp.GetResponseCodeDetails()
	info.BytesSent = resp.GetResponseBodyBytes()
	if len(resp.GetResponseHeaders()) > 0 {
		info.ResponseHeaders = filter.NewHeaderMap()
		addSorted(info.ResponseHeaders, resp.GetResponseHeaders())
	}
	if len(resp.GetResponseTrailers()) > 0 {
		info.ResponseTrailers = filter.NewHeaderMap()
		addSorted(info.ResponseTrailers, resp.GetResponseTrailers())
	}
}

// TCPStreamInfo fills info from a TCP entry, the reverse of TCPEntry.
func TCPStreamInfo(e *datav3.TCPAccessLogEntry, info *filter.StreamInfo) {
	*info = filter.StreamInfo{}
	commonInfo(e.GetCommonProperties(), info)
	info.Protocol = filter.ProtocolTCP
	info.BytesReceived = e.GetConnectionProperties().GetReceivedBytes()
	info.BytesSent = e.GetConnectionProperties().GetSentBytes()
}

func commonInfo(c *datav3.AccessLogCommon, info *filter.StreamInfo) {
	if ts := c.GetStartTime(); ts != nil && ts.CheckValid() == nil {
		info.StartTime = ts.AsTime()
	}
	info.LastDownstreamRxByteReceived = offset(c.GetTimeToLastRxByte())
	info.FirstUpstreamTxByteSent = offset(c.GetTimeToFirstUpstreamTxByte())
	info.LastUpstreamTxByteSent = offset(c.GetTimeToLastUpstreamTxByte())
	info.FirstUpstreamRxByteReceived = offset(c.GetTimeToFirstUpstreamRxByte())
	info.LastUpstreamRxByteReceived = offset(c.GetTimeToLastUpstreamRxByte())
	info.FirstDownstreamTxByteSent = offset(c.GetTimeToFirstDownstreamTxByte())
	info.LastDownstreamTxByteSent = offset(c.GetTimeToLastDownstreamTxByte())
	info.ResponseFlags, _ = EntryFlags(c.GetResponseFlags())
	info.RouteName = c.GetRouteName()
	info.UpstreamCluster = c.GetUpstreamCluster()
	info.UpstreamHost = addressString(c.GetUpstreamRemoteAddress())
	info.UpstreamLocalAddress = addressString(c.GetUpstreamLocalAddress())
	info.UpstreamTransportFailureReason = c.GetUpstreamTransportFailureReason()
	info.DownstreamRemoteAddress = addrPort(c.GetDownstreamRemoteAddress())
	info.DownstreamLocalAddress = addrPort(c.GetDownstreamLocalAddress())
	info.DownstreamDirectRemoteAddress = addrPort(c.GetDownstreamDirectRemoteAddress())
	if tls := c.GetTlsProperties(); tls != nil {
		info.DownstreamTLS = true
		info.RequestedServerName = tls.GetTlsSniHostname()
		for _, san := range tls.GetPeerCertificateProperties().GetSubjectAltName() {
			if uri := san.GetUri(); uri != "" {
				info.DownstreamPeerURISAN = uri
				break
			}
		}
	}
}

func addrPort(a *corev3.Address) netip.AddrPort {
	sa := a.GetSocketAddress()
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil || sa.GetPortValue() > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, uint16(sa.GetPortValue()))
}

func addressString(a *corev3.Address) string {
	if ap := addrPort(a); ap.IsValid() {
		return ap.String()
	}
	return a.GetSocketAddress().GetAddress()
}

// addSorted adds m's headers in name order, so that formatting is
// deterministic.
func addSorted(h *filter.HeaderMap, m map[string]string) {
	if len(m) == 0 {
		return
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		h.Add(k, m[k])
	}
}

// offset is a valid, non-negative duration, else 0 ("did not happen").
func offset(d *durationpb.Duration) time.Duration {
	if d == nil || d.CheckValid() != nil || d.AsDuration() < 0 {
		return 0
	}
	return d.AsDuration()
}
