package accesslog

import (
	"net/netip"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// fullStream is a finished HTTP/2 gRPC stream with most fields set.
func fullStream() *filter.StreamInfo {
	info := &filter.StreamInfo{
		StartTime:                      time.Date(2024, 1, 2, 3, 4, 5, 678_000_000, time.UTC),
		Protocol:                       filter.ProtocolHTTP2,
		LastDownstreamRxByteReceived:   2 * time.Millisecond,
		FirstUpstreamTxByteSent:        3 * time.Millisecond,
		LastUpstreamTxByteSent:         4 * time.Millisecond,
		FirstUpstreamRxByteReceived:    15 * time.Millisecond,
		LastUpstreamRxByteReceived:     20 * time.Millisecond,
		FirstDownstreamTxByteSent:      16 * time.Millisecond,
		LastDownstreamTxByteSent:       21 * time.Millisecond,
		BytesReceived:                  154,
		BytesSent:                      1024,
		ResponseCode:                   503,
		ResponseCodeDetails:            "upstream_reset_before_response_started{connection_failure}",
		ResponseFlags:                  filter.UpstreamConnectionFailure | filter.UpstreamRetryLimitExceeded | filter.UnauthorizedExternalService,
		RouteName:                      "default-route",
		UpstreamCluster:                "backend",
		UpstreamHost:                   "10.0.0.7:8080",
		UpstreamLocalAddress:           "10.0.0.2:45678",
		UpstreamTransportFailureReason: "connection refused",
		DownstreamRemoteAddress:        netip.MustParseAddrPort("192.0.2.10:51234"),
		DownstreamLocalAddress:         netip.MustParseAddrPort("[2001:db8::1]:15006"),
		DownstreamDirectRemoteAddress:  netip.MustParseAddrPort("192.0.2.1:40000"),
		RequestedServerName:            "api.example.com",
		DownstreamTLS:                  true,
		DownstreamPeerURISAN:           "spiffe://cluster.local/ns/default/sa/client",
		RequestHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":method", Value: "POST"},
			filter.HeaderField{Name: ":path", Value: "/pkg.Service/Method"},
			filter.HeaderField{Name: ":authority", Value: "api.example.com:8443"},
			filter.HeaderField{Name: ":scheme", Value: "https"},
			filter.HeaderField{Name: "x-envoy-original-path", Value: "/original"},
			filter.HeaderField{Name: "user-agent", Value: "grpc-go/1.85"},
			filter.HeaderField{Name: "referer", Value: "https://example.com/"},
			filter.HeaderField{Name: "x-forwarded-for", Value: "10.0.35.28"},
			filter.HeaderField{Name: "x-request-id", Value: "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"},
			filter.HeaderField{Name: "content-type", Value: "application/grpc"},
			filter.HeaderField{Name: "x-tenant", Value: "acme"},
		),
		ResponseHeaders: filter.NewHeaderMap(
			filter.HeaderField{Name: ":status", Value: "503"},
			filter.HeaderField{Name: "x-envoy-upstream-service-time", Value: "12"},
			filter.HeaderField{Name: "x-cache", Value: "miss"},
		),
		ResponseTrailers: filter.NewHeaderMap(
			filter.HeaderField{Name: "grpc-status", Value: "14"},
		),
	}
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "user", "alice")
	info.SetDynamicMetadata("envoy.filters.http.ext_authz", "score", 0.5)
	return info
}
