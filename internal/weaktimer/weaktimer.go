// Package weaktimer arms timers that do not keep their target alive.
//
// The proxy arms its per-stream timers lazily: a timer left pending when a
// request ends is not stopped, and fires later only to find nothing to do
// or to re-arm for the current request. Streams are pooled, and a pooled
// stream the pool drops must not be kept alive by such a timer until it
// fires (minutes, for a stream idle timeout). AfterFunc's timer reaches
// its target through a weak pointer, and stops once the target has been
// collected.
package weaktimer

import (
	"runtime"
	"time"
	"weak"
)

// AfterFunc waits for d and then calls f(p) in its own goroutine, unless p
// has been collected by then. The returned timer may be Reset and Stopped
// as time.AfterFunc's; it is stopped when p is collected.
func AfterFunc[T any](p *T, d time.Duration, f func(*T)) *time.Timer {
	w := weak.Make(p)
	t := time.AfterFunc(d, func() {
		if p := w.Value(); p != nil {
			f(p)
		}
	})
	runtime.AddCleanup(p, func(t *time.Timer) { t.Stop() }, t)
	return t
}
