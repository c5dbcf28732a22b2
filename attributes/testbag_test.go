package attributes

import (
	"net/netip"
	"time"
)

// requestBag is a realistic 30-attribute bag, as a sidecar builds it for
// one inbound HTTP request.
func requestBag() Bag {
	bd := NewBuilder(32)
	bd.Set(SourceUID, String("kubernetes://productpage-v1-6b746f74dc-9stvs.default"))
	bd.Set(SourceIP, IPAddress(netip.MustParseAddr("10.44.0.7")))
	bd.Set(SourcePrincipal, String("spiffe://cluster.local/ns/default/sa/bookinfo-productpage"))
	bd.Set(SourceNamespace, String("default"))
	bd.Set(SourceWorkloadName, String("productpage-v1"))
	bd.Set(SourceLabels, StringMapValue(StringMapOf(map[string]string{"app": "productpage", "version": "v1"})))
	bd.Set(DestinationUID, String("kubernetes://reviews-v2-7bf8c9648f-mmwlw.default"))
	bd.Set(DestinationIP, IPAddress(netip.MustParseAddr("10.44.0.12")))
	bd.Set(DestinationPort, Int64(9080))
	bd.Set(DestinationNamespace, String("default"))
	bd.Set(DestinationWorkloadName, String("reviews-v2"))
	bd.Set(DestinationServiceHost, String("reviews.default.svc.cluster.local"))
	bd.Set(DestinationServiceName, String("reviews"))
	bd.Set(DestinationLabels, StringMapValue(StringMapOf(map[string]string{"app": "reviews", "version": "v2"})))
	bd.Set(RequestHeaders, StringMapValue(StringMapOf(map[string]string{
		":authority": "reviews:9080", ":path": "/reviews/0", ":method": "GET", "user-agent": "python-requests/2.18.4",
		"accept": "*/*", "x-request-id": "8f3c0a1e-2b4d-4c6e-9f70-1a2b3c4d5e6f", "x-b3-traceid": "463ac35c9f6413ad",
		"x-forwarded-proto": "http", "content-length": "0",
	})))
	bd.Set(RequestPath, String("/reviews/0"))
	bd.Set(RequestURLPath, String("/reviews/0"))
	bd.Set(RequestHost, String("reviews:9080"))
	bd.Set(RequestMethod, String("GET"))
	bd.Set(RequestScheme, String("http"))
	bd.Set(RequestUserAgent, String("python-requests/2.18.4"))
	bd.Set(RequestID, String("8f3c0a1e-2b4d-4c6e-9f70-1a2b3c4d5e6f"))
	bd.Set(RequestSize, Int64(0))
	bd.Set(RequestTime, Timestamp(time.Date(2026, 11, 22, 4, 5, 6, 789000000, time.UTC)))
	bd.Set(ConnectionMTLS, Bool(true))
	bd.Set(ContextProtocol, String(ProtocolHTTP))
	bd.Set(ContextReporterKind, String(ReporterInbound))
	bd.Set(ContextReporterUID, String("kubernetes://reviews-v2-7bf8c9648f-mmwlw.default"))
	bd.Set(ResponseDuration, Duration(3250*time.Microsecond))
	bd.Set("custom.ratio", Double(0.25))
	bd.Set("custom.blob", Bytes([]byte{0, 1, 2, 0xff}))
	return bd.Build()
}
