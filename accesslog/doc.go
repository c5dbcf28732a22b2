// Package accesslog turns finished streams into access-log entries.
//
// A Handler is built once from a Config (one entry of a listener's or
// connection manager's access_log list) by New. The connection manager
// calls Handler.Log with each finished stream's filter.StreamInfo; the
// handler evaluates its compiled Filter, then hands the stream to its sink:
//
//   - a file sink renders the stream with an accesslog/format Formatter into
//     a pooled buffer and copies the line into a bounded in-memory buffer
//     that a writer goroutine flushes to the file (every flush_interval or
//     flush_bytes); Reopen reopens the file after rotation;
//   - a gRPC sink converts the stream with accesslog/als into an Envoy
//     HTTPAccessLogEntry and buffers it for a sender goroutine that streams
//     batches to an Envoy access-log service (StreamAccessLogs),
//     reconnecting with backoff.
//
// Log never blocks on I/O and never keeps the StreamInfo: when a sink's
// buffer is full the entry is dropped and counted. Every sink reports
// Envoy-named counters (logs_written, logs_dropped, write_failed, ...) on the
// Metrics it was given, labelled with the sink's name.
package accesslog
