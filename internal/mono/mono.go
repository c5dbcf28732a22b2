// Package mono reads the monotonic clock alone. time.Now reads two clocks
// (wall and monotonic); the per-request bookkeeping of idle and activity
// times needs only the monotonic one, at half the cost.
package mono

import "time"

// base is the origin of Now. time.Since on a time with a monotonic reading
// reads only the monotonic clock.
var base = time.Now()

// Now returns the nanoseconds elapsed since the process started, from the
// monotonic clock: differences of two readings are durations, unaffected
// by changes of the wall clock.
func Now() int64 { return int64(time.Since(base)) }

// Since returns the time elapsed since the reading t of Now.
func Since(t int64) time.Duration { return time.Duration(Now() - t) }
