// Package als converts between Remora's stream information and Envoy's
// access-log service (envoy.data.accesslog.v3) messages.
//
// HTTPEntry turns a finished filter.StreamInfo into an HTTPAccessLogEntry,
// copying everything it needs: the entry shares no memory with the
// StreamInfo, so the StreamInfo may be reused as soon as HTTPEntry returns.
// The gRPC access-log sink uses it to stream entries to a service; the
// mixer server will use the reverse direction (entry → attributes) to
// ingest real Envoy's access logs.
package als
