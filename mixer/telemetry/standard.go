package telemetry

import "github.com/remora-mesh/remora/attributes"

// Names of the standard metrics.
const (
	RequestsTotal         = "istio_requests_total"
	RequestDuration       = "istio_request_duration_milliseconds"
	RequestBytes          = "istio_request_bytes"
	ResponseBytes         = "istio_response_bytes"
	TCPSentBytes          = "istio_tcp_sent_bytes_total"
	TCPReceivedBytes      = "istio_tcp_received_bytes_total"
	TCPConnectionsOpened  = "istio_tcp_connections_opened_total"
	TCPConnectionsClosed  = "istio_tcp_connections_closed_total"
	connectionEventOpen   = "open"
	connectionEventClosed = "close"
)

var standardNames = []string{RequestsTotal, RequestDuration, RequestBytes, ResponseBytes,
	TCPSentBytes, TCPReceivedBytes, TCPConnectionsOpened, TCPConnectionsClosed}

// DurationBuckets are Istio's istio_request_duration_milliseconds bounds.
var DurationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// ByteBuckets are Istio's istio_request_bytes and istio_response_bytes
// bounds: Mixer's prometheus handler configured them as exponential buckets
// with scale 1, growth factor 10 and 8 finite buckets, that is
// 1, 10, ..., 10^8.
var ByteBuckets = []float64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

func ref(name string) attrRef         { return attrRef{name: name} }
func mapRef(name, key string) attrRef { return attrRef{name: name, key: key, hasKey: true} }

func attrLabel(name, def string, refs ...attrRef) label {
	return label{name: name, kind: labelAttr, refs: refs, def: def}
}

// peerLabels are the workload and service labels shared by every standard
// metric, following Istio's default Mixer configuration.
func peerLabels() []label {
	const u = DefaultLabelValue
	return []label{
		{name: "reporter", kind: labelReporter},
		attrLabel("source_workload", u, ref(attributes.SourceWorkloadName)),
		attrLabel("source_workload_namespace", u, ref(attributes.SourceWorkloadNamespace)),
		attrLabel("source_principal", u, ref(attributes.SourcePrincipal)),
		attrLabel("source_app", u, mapRef(attributes.SourceLabels, "app")),
		attrLabel("source_version", u, mapRef(attributes.SourceLabels, "version")),
		attrLabel("destination_workload", u, ref(attributes.DestinationWorkloadName)),
		attrLabel("destination_workload_namespace", u, ref(attributes.DestinationWorkloadNamespace)),
		attrLabel("destination_principal", u, ref(attributes.DestinationPrincipal)),
		attrLabel("destination_app", u, mapRef(attributes.DestinationLabels, "app")),
		attrLabel("destination_version", u, mapRef(attributes.DestinationLabels, "version")),
		attrLabel("destination_service", u, ref(attributes.DestinationServiceHost)),
		attrLabel("destination_service_name", u, ref(attributes.DestinationServiceName)),
		attrLabel("destination_service_namespace", u, ref(attributes.DestinationServiceNamespace)),
	}
}

// requestLabels is the label set of the request metrics.
func requestLabels() []label {
	return append(peerLabels(),
		attrLabel("request_protocol", DefaultLabelValue, ref(attributes.APIProtocol), ref(attributes.ContextProtocol)),
		attrLabel("response_code", "200", ref(attributes.ResponseCode)),
		attrLabel("grpc_response_status", "", ref(attributes.ResponseGRPCStatus)),
		attrLabel("response_flags", "-", ref(attributes.ContextProxyErrorCode)),
		label{name: "connection_security_policy", kind: labelSecurityPolicy},
	)
}

// tcpLabels is the label set of the TCP metrics.
func tcpLabels() []label {
	return append(peerLabels(),
		attrLabel("response_flags", "-", ref(attributes.ContextProxyErrorCode)),
		label{name: "connection_security_policy", kind: labelSecurityPolicy},
	)
}

// standardDef describes one standard metric.
type standardDef struct {
	name, help string
	kind       kind
	buckets    []float64
	tcp        bool
	event      string
	value      valueFunc
}

func valueOr0(name string) valueFunc { return valueFunc{refs: []attrRef{ref(name)}, hasDef: true} }

var standardDefs = []standardDef{
	{name: RequestsTotal, help: "Requests reported, by source, destination and response.", kind: kindCounter, value: valueFunc{one: true}},
	{name: RequestDuration, help: "Request duration in milliseconds (response.duration).", kind: kindHistogram, buckets: DurationBuckets, value: valueOr0(attributes.ResponseDuration)},
	{name: RequestBytes, help: "Request body size in bytes (request.size).", kind: kindHistogram, buckets: ByteBuckets, value: valueOr0(attributes.RequestSize)},
	{name: ResponseBytes, help: "Response body size in bytes (response.size).", kind: kindHistogram, buckets: ByteBuckets, value: valueOr0(attributes.ResponseSize)},
	{name: TCPSentBytes, help: "Bytes sent to the downstream on TCP connections (connection.sent.bytes).", kind: kindCounter, tcp: true, value: valueOr0(attributes.ConnectionSentBytes)},
	{name: TCPReceivedBytes, help: "Bytes received from the downstream on TCP connections (connection.received.bytes).", kind: kindCounter, tcp: true, value: valueOr0(attributes.ConnectionReceivedBytes)},
	{name: TCPConnectionsOpened, help: "TCP connections opened (connection.event open).", kind: kindCounter, tcp: true, event: connectionEventOpen, value: valueFunc{one: true}},
	{name: TCPConnectionsClosed, help: "TCP connections closed (connection.event close).", kind: kindCounter, tcp: true, event: connectionEventClosed, value: valueFunc{one: true}},
}
