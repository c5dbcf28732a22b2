package attributes

// The Istio attribute vocabulary, as typed constants so that no code spells
// an attribute name twice. Types are in Vocabulary.
const (
	SourceUID               = "source.uid"
	SourceIP                = "source.ip"
	SourcePort              = "source.port"
	SourceLabels            = "source.labels"
	SourceName              = "source.name"
	SourceNamespace         = "source.namespace"
	SourcePrincipal         = "source.principal"
	SourceOwner             = "source.owner"
	SourceUser              = "source.user"
	SourceWorkloadUID       = "source.workload.uid"
	SourceWorkloadName      = "source.workload.name"
	SourceWorkloadNamespace = "source.workload.namespace"

	DestinationUID               = "destination.uid"
	DestinationIP                = "destination.ip"
	DestinationPort              = "destination.port"
	DestinationLabels            = "destination.labels"
	DestinationName              = "destination.name"
	DestinationNamespace         = "destination.namespace"
	DestinationPrincipal         = "destination.principal"
	DestinationOwner             = "destination.owner"
	DestinationUser              = "destination.user"
	DestinationWorkloadUID       = "destination.workload.uid"
	DestinationWorkloadName      = "destination.workload.name"
	DestinationWorkloadNamespace = "destination.workload.namespace"
	DestinationContainerName     = "destination.container.name"
	DestinationContainerImage    = "destination.container.image"
	DestinationServiceHost       = "destination.service.host"
	DestinationServiceUID        = "destination.service.uid"
	DestinationServiceName       = "destination.service.name"
	DestinationServiceNamespace  = "destination.service.namespace"

	OriginIP = "origin.ip"

	RequestHeaders     = "request.headers"
	RequestID          = "request.id"
	RequestPath        = "request.path"
	RequestURLPath     = "request.url_path"
	RequestQueryParams = "request.query_params"
	RequestHost        = "request.host"
	RequestMethod      = "request.method"
	RequestReason      = "request.reason"
	RequestReferer     = "request.referer"
	RequestScheme      = "request.scheme"
	RequestSize        = "request.size"
	RequestTotalSize   = "request.total_size"
	RequestTime        = "request.time"
	RequestUserAgent   = "request.useragent"

	// Remora additions, so that everything an Envoy ext_authz request
	// carries has an attribute to travel in.
	RequestProtocol   = "request.protocol"   // "HTTP/1.1", "HTTP/2" as Envoy names them
	RequestBody       = "request.body"       // the (possibly truncated) request body
	ContextExtensions = "context.extensions" // ext_authz context extensions of the route

	RequestAuthPrincipal = "request.auth.principal"
	RequestAuthAudiences = "request.auth.audiences"
	RequestAuthPresenter = "request.auth.presenter"
	RequestAuthClaims    = "request.auth.claims"
	RequestAuthRawClaims = "request.auth.raw_claims"
	RequestAPIKey        = "request.api_key"

	ResponseHeaders     = "response.headers"
	ResponseSize        = "response.size"
	ResponseTotalSize   = "response.total_size"
	ResponseTime        = "response.time"
	ResponseDuration    = "response.duration"
	ResponseCode        = "response.code"
	ResponseGRPCStatus  = "response.grpc_status"
	ResponseGRPCMessage = "response.grpc_message"

	ConnectionID                  = "connection.id"
	ConnectionEvent               = "connection.event"
	ConnectionReceivedBytes       = "connection.received.bytes"
	ConnectionReceivedBytesTotal  = "connection.received.bytes_total"
	ConnectionSentBytes           = "connection.sent.bytes"
	ConnectionSentBytesTotal      = "connection.sent.bytes_total"
	ConnectionDuration            = "connection.duration"
	ConnectionMTLS                = "connection.mtls"
	ConnectionRequestedServerName = "connection.requested_server_name"

	ContextProtocol     = "context.protocol"
	ContextTime         = "context.time"
	ContextTimestamp    = "context.timestamp"
	ContextReporterKind = "context.reporter.kind"
	ContextReporterUID  = "context.reporter.uid"
	// ContextReporterPrincipal is the verified identity of the caller of
	// the Mixer server (its client certificate), set by the server only.
	ContextReporterPrincipal = "context.reporter.principal"
	ContextProxyErrorCode    = "context.proxy_error_code"
	ContextProxyVersion      = "context.proxy_version"

	APIService   = "api.service"
	APIVersion   = "api.version"
	APIOperation = "api.operation"
	APIProtocol  = "api.protocol"

	CheckErrorCode    = "check.error_code"
	CheckErrorMessage = "check.error_message"
	CheckCacheHit     = "check.cache_hit"
	QuotaCacheHit     = "quota.cache_hit"
)

// Values of context.reporter.kind and context.protocol.
const (
	ReporterInbound  = "inbound"
	ReporterOutbound = "outbound"

	ProtocolHTTP = "http"
	ProtocolGRPC = "grpc"
	ProtocolTCP  = "tcp"
)

// Vocabulary maps every attribute name Remora knows to its kind. Decoding
// checks a known attribute's wire type against it; unknown attributes are
// accepted with whatever type they arrive as.
var Vocabulary = map[string]Kind{
	SourceUID: KindString, SourceIP: KindIPAddress, SourcePort: KindInt64, SourceLabels: KindStringMap,
	SourceName: KindString, SourceNamespace: KindString, SourcePrincipal: KindString, SourceOwner: KindString,
	SourceUser: KindString, SourceWorkloadUID: KindString, SourceWorkloadName: KindString,
	SourceWorkloadNamespace: KindString,

	DestinationUID: KindString, DestinationIP: KindIPAddress, DestinationPort: KindInt64,
	DestinationLabels: KindStringMap, DestinationName: KindString, DestinationNamespace: KindString,
	DestinationPrincipal: KindString, DestinationOwner: KindString, DestinationUser: KindString,
	DestinationWorkloadUID: KindString, DestinationWorkloadName: KindString,
	DestinationWorkloadNamespace: KindString, DestinationContainerName: KindString,
	DestinationContainerImage: KindString, DestinationServiceHost: KindString,
	DestinationServiceUID: KindString, DestinationServiceName: KindString,
	DestinationServiceNamespace: KindString,

	OriginIP: KindIPAddress,

	RequestHeaders: KindStringMap, RequestID: KindString, RequestPath: KindString, RequestURLPath: KindString,
	RequestQueryParams: KindStringMap, RequestHost: KindString, RequestMethod: KindString,
	RequestReason: KindString, RequestReferer: KindString, RequestScheme: KindString, RequestSize: KindInt64,
	RequestTotalSize: KindInt64, RequestTime: KindTimestamp, RequestUserAgent: KindString,
	RequestProtocol: KindString, RequestBody: KindString, ContextExtensions: KindStringMap,

	RequestAuthPrincipal: KindString, RequestAuthAudiences: KindString, RequestAuthPresenter: KindString,
	RequestAuthClaims: KindStringMap, RequestAuthRawClaims: KindString, RequestAPIKey: KindString,

	ResponseHeaders: KindStringMap, ResponseSize: KindInt64, ResponseTotalSize: KindInt64,
	ResponseTime: KindTimestamp, ResponseDuration: KindDuration, ResponseCode: KindInt64,
	ResponseGRPCStatus: KindString, ResponseGRPCMessage: KindString,

	ConnectionID: KindString, ConnectionEvent: KindString, ConnectionReceivedBytes: KindInt64,
	ConnectionReceivedBytesTotal: KindInt64, ConnectionSentBytes: KindInt64, ConnectionSentBytesTotal: KindInt64,
	ConnectionDuration: KindDuration, ConnectionMTLS: KindBool, ConnectionRequestedServerName: KindString,

	ContextProtocol: KindString, ContextTime: KindTimestamp, ContextTimestamp: KindTimestamp,
	ContextReporterKind: KindString, ContextReporterUID: KindString, ContextReporterPrincipal: KindString, ContextProxyErrorCode: KindString,
	ContextProxyVersion: KindString,

	APIService: KindString, APIVersion: KindString, APIOperation: KindString, APIProtocol: KindString,

	CheckErrorCode: KindInt64, CheckErrorMessage: KindString, CheckCacheHit: KindBool, QuotaCacheHit: KindBool,
}

// KindOf returns the vocabulary kind of name.
func KindOf(name string) (Kind, bool) {
	k, ok := Vocabulary[name]
	return k, ok
}
