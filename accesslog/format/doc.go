// Package format compiles Envoy-compatible access-log format strings and
// JSON format dictionaries, and renders a finished stream's
// filter.StreamInfo with them.
//
// A format is compiled once, at configuration load, into a *Formatter;
// compiling reports the first problem with its byte position
// ("format: position 12: unknown operator %FOO%"). Rendering appends to a
// caller-owned byte slice and allocates nothing of its own for the built-in
// operators (dynamic metadata holding maps or lists is the exception), so a
// sink renders into a pooled buffer and copies the line where it must go.
//
// Text formats print "-" for a value that is not set (or nothing with
// OmitEmptyValues). JSON dictionaries render every value as a string
// (json_format) or, with Typed, numbers as numbers, booleans as booleans and
// unset values as null (typed_json_format). Keys are sorted bytewise at every
// level of nesting, as Envoy's protobuf Struct serialisation sorts them.
package format
