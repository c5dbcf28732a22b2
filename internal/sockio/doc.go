// Package sockio gives TCP connections cheaper reads and writes.
//
// A read or write on a *net.TCPConn is a system call made through the
// runtime's entersyscall/exitsyscall pair. When a proxy spends most of
// its time in short socket system calls, that pair costs more than its
// bookkeeping: the runtime's monitor thread keeps waking every 20 µs to
// look for processors stuck in system calls, hands them to other threads
// and wakes those with futexes. On a non-blocking socket read(2) and
// write(2) never block, so Wrap issues them as raw system calls from
// inside the poller (syscall.RawConn): the runtime still parks the
// goroutine when the socket is not ready and still honours deadlines and
// Close, but the monitor sees no system call and backs off.
//
// Whole-process measurements are in docs/benchmarks.md; the package's
// own benchmarks compare it with net.TCPConn on loopback.
//
// Read deadlines are handed to the poller lazily (Conn.SetReadDeadline):
// moving a deadline forward or clearing it, as a connection server does
// on every request, costs no poller timer change.
//
// Wrap is applied where the proxy accepts and dials TCP connections. Code
// that needs the *net.TCPConn itself (splice, SO_ORIGINAL_DST) asks TCP.
package sockio
