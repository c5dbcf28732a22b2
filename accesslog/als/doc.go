// Package als converts between Remora's stream information and Envoy's
// access-log service (envoy.data.accesslog.v3) messages.
//
// HTTPEntry turns a finished filter.StreamInfo into an HTTPAccessLogEntry,
// copying everything it needs: the entry shares no memory with the
// StreamInfo, so the StreamInfo may be reused as soon as HTTPEntry returns.
// The gRPC access-log sink uses it to stream entries to a service.
//
// The reverse direction serves the mixer server, which ingests real
// Envoy's access logs: HTTPAttributes and TCPAttributes turn an entry (and
// the stream's Identity, from NewIdentity) into the attribute bag a Report
// of the same request carries, and HTTPStreamInfo and TCPStreamInfo rebuild
// a StreamInfo so that entries can be written by a file sink.
package als
