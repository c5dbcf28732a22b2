package policy

import (
	"net/netip"
	"strings"

	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"

	"github.com/remora-mesh/remora/attributes"
)

// BagFromCheckRequest converts an Envoy ext_authz v3 CheckRequest into the
// attributes a Mixer Check carries, so that both front doors share one
// input builder and one policy sees the same document from either. The
// mapping is listed in docs/policy.md. Headers come from the headers map,
// or from header_map when Envoy encodes raw headers. Parts of the request with no
// attribute (metadata contexts, certificates, raw bodies, non-IP socket
// addresses) are not carried. A nil request gives an empty bag.
func BagFromCheckRequest(req *authv3.CheckRequest) attributes.Bag {
	a := req.GetAttributes()
	bd := attributes.NewBuilder(24)
	setString := func(name, v string) {
		if v != "" {
			bd.Set(name, attributes.String(v))
		}
	}
	setMap := func(name string, m map[string]string) {
		if len(m) > 0 {
			bd.Set(name, attributes.StringMapValue(attributes.StringMapOf(m)))
		}
	}
	peer := func(p *authv3.AttributeContext_Peer, ip, port, principal, labels string) {
		if sa := p.GetAddress().GetSocketAddress(); sa != nil {
			if addr, err := netip.ParseAddr(sa.GetAddress()); err == nil {
				bd.Set(ip, attributes.IPAddress(addr))
			}
			if pv := sa.GetPortValue(); pv != 0 {
				bd.Set(port, attributes.Int64(int64(pv)))
			}
		}
		setString(principal, p.GetPrincipal())
		setMap(labels, p.GetLabels())
	}
	peer(a.GetSource(), attributes.SourceIP, attributes.SourcePort, attributes.SourcePrincipal, attributes.SourceLabels)
	peer(a.GetDestination(), attributes.DestinationIP, attributes.DestinationPort, attributes.DestinationPrincipal, attributes.DestinationLabels)

	r := a.GetRequest()
	if t := r.GetTime(); t != nil && t.IsValid() {
		bd.Set(attributes.RequestTime, attributes.Timestamp(t.AsTime()))
	}
	h := r.GetHttp()
	setString(attributes.RequestID, h.GetId())
	setString(attributes.RequestMethod, h.GetMethod())
	setString(attributes.RequestPath, h.GetPath())
	if p := h.GetPath(); p != "" {
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		setString(attributes.RequestURLPath, p)
	}
	setString(attributes.RequestHost, h.GetHost())
	setString(attributes.RequestScheme, h.GetScheme())
	setString(attributes.RequestProtocol, h.GetProtocol())
	if s := h.GetSize(); s != 0 {
		bd.Set(attributes.RequestSize, attributes.Int64(s))
	}
	headers := h.GetHeaders()
	if len(headers) == 0 && len(h.GetHeaderMap().GetHeaders()) > 0 {
		headers = headersFromMap(h.GetHeaderMap().GetHeaders())
	}
	setMap(attributes.RequestHeaders, headers)
	setString(attributes.RequestUserAgent, headers["user-agent"])
	setString(attributes.RequestBody, h.GetBody())
	if h != nil {
		proto := attributes.ProtocolHTTP
		if strings.HasPrefix(headers["content-type"], "application/grpc") {
			proto = attributes.ProtocolGRPC
		}
		bd.Set(attributes.ContextProtocol, attributes.String(proto))
	}
	setMap(attributes.ContextExtensions, a.GetContextExtensions())
	setString(attributes.ConnectionRequestedServerName, a.GetTlsSession().GetSni())
	return bd.Build()
}

// headersFromMap flattens the header_map Envoy sends with
// encode_raw_headers into the headers map form: lower-case names, repeated
// values joined with ",", raw values taken as strings.
func headersFromMap(hs []*corev3.HeaderValue) map[string]string {
	m := make(map[string]string, len(hs))
	for _, hv := range hs {
		v := hv.GetValue()
		if v == "" && len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		k := strings.ToLower(hv.GetKey())
		if old, ok := m[k]; ok {
			v = old + "," + v
		}
		m[k] = v
	}
	return m
}
