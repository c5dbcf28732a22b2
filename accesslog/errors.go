package accesslog

import "errors"

// ErrClosed is returned by Flush and Reopen after Close.
var ErrClosed = errors.New("accesslog: handler is closed")
