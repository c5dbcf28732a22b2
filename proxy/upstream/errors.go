package upstream

import "errors"

// Sentinel errors. They are wrapped in *Error when a response flag applies.
var (
	// ErrClosed is returned once the Manager (or a pool) has been closed.
	ErrClosed = errors.New("upstream: closed")
	// ErrNoHealthyUpstream means the cluster has no host to pick.
	ErrNoHealthyUpstream = errors.New("upstream: no healthy upstream")
	// ErrOverflow means a circuit breaker refused the request.
	ErrOverflow = errors.New("upstream: circuit breaker overflow")
	// ErrStreamClosed is returned by a Stream used after Close or Reset.
	ErrStreamClosed = errors.New("upstream: stream closed")
	// ErrMalformedResponse means the upstream sent an invalid HTTP/1 response.
	ErrMalformedResponse = errors.New("upstream: malformed response")
	// ErrConnectionClosed means the upstream closed the connection before
	// the response was complete.
	ErrConnectionClosed = errors.New("upstream: connection closed by upstream")
	// ErrStaleConnection means a pooled HTTP/1.1 connection that had
	// carried earlier requests was closed or reset by the upstream before
	// a byte of the response to this one arrived: the upstream closed it
	// while it was idle and never handled the request. A replayable
	// request may be sent again on another connection (see
	// StreamOptions.ProbeConnection).
	ErrStaleConnection = errors.New("upstream: pooled connection closed by upstream before the response")
)
