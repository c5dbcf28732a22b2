package accesslog

import "errors"

// ErrClosed is returned by Flush and Reopen after Close.
var ErrClosed = errors.New("accesslog: handler is closed")

// errNotConnected means a gRPC sink has no stream and may not try to open
// one yet (backoff); its entries stay buffered.
var errNotConnected = errors.New("accesslog: access log service unreachable")
