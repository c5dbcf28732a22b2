// Package filter is the contract at the centre of the sidecar: the HTTP
// stream filter API, the per-stream StreamInfo, response flags, header maps
// and the access-log handler hook.
//
// It depends on no codec: header maps are lower-cased name/value lists with
// HTTP/2 pseudo-headers (:method, :path, :authority, :scheme, :status), and
// bodies are byte slices. A codec (net/http based today) translates the wire
// into these types, so that a faster codec can replace it without touching
// any filter.
//
// Data enters a stream through the decoder filters in configuration order
// (the router is always the last, terminal one) and the response leaves
// through the encoder filters in reverse order. When the stream ends, every
// access-log handler is called exactly once with the stream's StreamInfo.
package filter
