package upstream

import (
	"context"
	"fmt"

	"github.com/remora-mesh/remora/proxy/filter"
)

// Stream is one request/response exchange with an upstream host, independent
// of the upstream codec (HTTP/1.1 or HTTP/2). The router owns it: it writes
// the request body and trailers while it reads the response, from at most
// two goroutines (one writing, one reading). Close or Reset must be called
// exactly once; Reset may be called from a third goroutine to abort
// blocked reads and writes. After Close or Reset every method fails with
// ErrStreamClosed (Trailers returns nil): an HTTP/1.1 connection may
// already be carrying the next request.
type Stream interface {
	// WriteData sends request body bytes; endStream ends the request.
	// data may be reused by the caller after WriteData returns.
	WriteData(data []byte, endStream bool) error
	// WriteTrailers sends request trailers and ends the request.
	WriteTrailers(trailers *filter.HeaderMap) error
	// ReadHeaders blocks until the response headers (with :status) arrive
	// or ctx ends. endStream reports a response without a body.
	// For an upgrade (101 Switching Protocols, or 2xx to CONNECT) the
	// stream then carries raw bytes in both directions through WriteData
	// and ReadData.
	ReadHeaders(ctx context.Context) (headers *filter.HeaderMap, endStream bool, err error)
	// ReadData reads response body bytes into p; io.EOF after the last.
	ReadData(p []byte) (int, error)
	// Trailers returns the response trailers once ReadData returned io.EOF;
	// nil when there were none.
	Trailers() *filter.HeaderMap
	// Close ends a finished exchange, returning the connection to its pool
	// when it can be reused.
	Close()
	// Reset aborts the exchange (closes an HTTP/1 connection, resets an
	// HTTP/2 stream).
	Reset()
}

// Error is a failure to get a request to an upstream host, with the response
// flag the stream ends with (UO overflow, UF connection failure, UH no
// healthy host, UC connection terminated, UPE protocol error ...).
type Error struct {
	Flag   filter.ResponseFlags
	Reason string // %UPSTREAM_TRANSPORT_FAILURE_REASON%, "" if none
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("upstream: %s: %v", e.Flag, e.Err)
	}
	return fmt.Sprintf("upstream: %s: %s", e.Flag, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }
