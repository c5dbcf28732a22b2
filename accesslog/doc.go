// Package accesslog formats and writes access-log entries.
//
// A finished stream's information enters through an access-log handler; it
// is filtered, formatted with Envoy-compatible format strings (text or
// JSON), and leaves through a sink: a file or an Envoy access-log service
// gRPC stream.
package accesslog
