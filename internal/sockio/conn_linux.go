//go:build linux

package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// maxRawWrite bounds one raw write(2): a write the runtime does not see
// cannot be preempted, so a large buffer goes in 64 KiB steps.
const maxRawWrite = 64 << 10

// Conn is a TCP connection whose Read and Write issue read(2) and write(2)
// as raw system calls, and whose read deadline is handed to the poller
// lazily (see SetReadDeadline). Everything else (write deadlines,
// addresses, Close, CloseWrite, ReadFrom's splice) is the embedded
// *net.TCPConn's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	// The poller calls readFn and writeFn with the socket's descriptor;
	// they are built once so that a Read or a Write allocates nothing,
	// and take the caller's buffer from rp/wp. rmu and wmu keep
	// concurrent Reads (or Writes) from sharing those fields.
	rmu     sync.Mutex
	rp      []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(fd uintptr) bool
	wmu     sync.Mutex
	wp      []byte
	werr    syscall.Errno
	writeFn func(fd uintptr) bool

	// WriteOnRead's bytes: pending (under wmu) until a Read takes them
	// into rw, which its callback writes before it waits for data.
	pbuf        []byte
	pending     []byte
	rw          []byte
	rwerr       syscall.Errno
	writeReadFn func(fd uintptr) bool

	// The read deadline asked for (want) and the one the poller holds
	// (set); zero is none. direct: TCP handed the socket out, so every
	// deadline goes to the poller as asked.
	dmu    sync.Mutex
	want   time.Time
	set    time.Time
	direct bool
}

// Wrap returns c with raw-syscall reads and writes when c is a
// *net.TCPConn, and c itself otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	sc := &Conn{TCPConn: tc, rc: rc}
	sc.readFn = sc.read
	sc.writeFn = sc.write
	sc.writeReadFn = sc.writeRead
	return sc
}

// TCP returns the *net.TCPConn c is or wraps. A wrapped connection's
// read deadline is handed to the socket first, and from then on every
// deadline is, so that code reading the *net.TCPConn itself (splice)
// sees the deadline asked for.
func TCP(c net.Conn) (*net.TCPConn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		return c, true
	case *Conn:
		c.handOver()
		return c.TCPConn, true
	}
	return nil, false
}

// WriteTo is net.TCPConn's (splice on Linux), which reads the socket
// itself: the read deadline asked for is handed to the socket first.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.handOver()
	return c.TCPConn.WriteTo(w)
}

// handOver gives the socket the read deadline asked for and makes every
// later one go to it directly, for code that reads the socket without
// Read.
func (c *Conn) handOver() {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.direct = true
	if !c.set.Equal(c.want) {
		_ = c.TCPConn.SetReadDeadline(c.want)
		c.set = c.want
	}
}

// SetReadDeadline sets the deadline of Reads as net.TCPConn's does, but
// hands it to the poller only when it is earlier than the one the poller
// holds. A connection server moves its idle deadline forward and clears
// it on every request; changing the poller's timer each time costs more
// than the rest of the bookkeeping, and the timer almost never fires. A
// later or cleared deadline waits until the poller's fires: Read then
// finds that the deadline asked for has not passed, hands it over and
// goes on waiting. The error is the socket's when the deadline is handed
// over, and nil otherwise (a closed connection's next Read reports the
// close).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.want = t
	if !c.direct && (t.IsZero() || (!c.set.IsZero() && !t.Before(c.set))) {
		return nil
	}
	c.set = t
	return c.TCPConn.SetReadDeadline(t)
}

// SetDeadline sets the read deadline as SetReadDeadline does and the
// write deadline as net.TCPConn's SetWriteDeadline does.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.TCPConn.SetWriteDeadline(t)
}

// rawRead is c.rc.Read(fn) under the read deadline asked for: when the
// poller's deadline passes before it, the wait goes on until it.
func (c *Conn) rawRead(fn func(fd uintptr) bool) error {
	for {
		err := c.rc.Read(fn)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !c.extendDeadline() {
			return err
		}
	}
}

// extendDeadline hands the deadline asked for to the poller after the
// poller's own passed, and reports false when the one asked for has
// passed too (the Read times out).
func (c *Conn) extendDeadline() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.direct || (!c.want.IsZero() && !time.Now().Before(c.want)) {
		return false
	}
	if c.TCPConn.SetReadDeadline(c.want) != nil {
		return false
	}
	c.set = c.want
	return true
}

// read is the poller's callback: false asks it to wait for readability.
func (c *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rp[0])), uintptr(len(c.rp)))
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
			return true
		}
	}
}

// writeRead is the poller's read callback of a Read that first writes
// rw: once rw is out it waits for readability without trying a read(2)
// that could only find nothing yet. The wait cannot miss the answer: the
// poller cleared the socket's readiness before this first call, so data
// that arrives after the write makes it ready again. It returns with rw
// partly unwritten when the socket cannot take more (EAGAIN), for Read to
// finish the write the usual way.
func (c *Conn) writeRead(fd uintptr) bool {
	if len(c.rw) == 0 {
		return c.read(fd)
	}
	full, e := drain(fd, &c.rw)
	if e != 0 {
		c.rwerr, c.rw = e, nil
	}
	return e != 0 || full
}

// WriteOnRead arranges for p to be written by the next Read (or before
// the next Write), which then waits for the peer's answer without first
// trying a read(2): a client that sends a request and reads its response
// saves the read that would find nothing yet. p is copied. A write error
// is the Read's error, a *net.OpError whose Op is "write"; Close drops
// bytes not written yet.
func (c *Conn) WriteOnRead(p []byte) {
	c.wmu.Lock()
	c.pbuf = append(c.pbuf[:0], p...)
	c.pending = c.pbuf
	c.wmu.Unlock()
}

// takePending returns the bytes WriteOnRead left (wmu held).
func (c *Conn) takePending() []byte {
	p := c.pending
	c.pending = nil
	return p
}

// write is the poller's callback: false asks it to wait for writability.
func (c *Conn) write(fd uintptr) bool {
	full, e := drain(fd, &c.wp)
	c.werr = e
	return e != 0 || !full
}

// drain writes *p with write(2), at most maxRawWrite bytes at a time,
// until it is empty, the socket is full (EAGAIN: full true) or a call
// fails (errno).
func drain(fd uintptr, p *[]byte) (full bool, errno syscall.Errno) {
	for len(*p) > 0 {
		q := *p
		if len(q) > maxRawWrite {
			q = q[:maxRawWrite]
		}
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&q[0])), uintptr(len(q)))
		switch e {
		case 0:
			*p = (*p)[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true, 0
		default:
			return false, e
		}
	}
	return false, 0
}

// Read reads as net.TCPConn's Read does: io.EOF at the peer's end of
// stream, a *net.OpError for anything else.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rp, c.rn, c.rerr = p, 0, 0
	defer func() { c.rp = nil }()
	c.wmu.Lock()
	c.rw = c.takePending()
	c.wmu.Unlock()
	var err error
	if len(c.rw) > 0 {
		c.rwerr = 0
		err = c.rawRead(c.writeReadFn)
		switch {
		case c.rwerr != 0:
			return 0, c.opError("write", os.NewSyscallError("write", c.rwerr))
		case err == nil && len(c.rw) > 0: // the socket was full
			rest := c.rw
			c.rw = nil
			if _, err := c.Write(rest); err != nil {
				return 0, err
			}
			err = c.rawRead(c.readFn) // tries a read first: data may be there already
		case err != nil && len(c.rw) > 0:
			c.rw = nil
			return 0, c.opError("write", err)
		}
	} else {
		err = c.rawRead(c.readFn)
	}
	n, errno := c.rn, c.rerr
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p unless an error (a *net.OpError) stops it, as
// net.TCPConn's Write does.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	if pend := c.takePending(); len(pend) > 0 {
		// WriteOnRead's bytes go first.
		c.wp, c.werr = pend, 0
		err := c.rc.Write(c.writeFn)
		errno := c.werr
		c.wp = nil
		if err != nil || errno != 0 {
			c.wmu.Unlock()
			if err == nil {
				err = os.NewSyscallError("write", errno)
			}
			return 0, c.opError("write", err)
		}
	}
	c.wp, c.werr = p, 0
	err := c.rc.Write(c.writeFn)
	n, errno := len(p)-len(c.wp), c.werr
	c.wp = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError reports err as net.TCPConn's Read and Write do, in place of
// the RawConn's "raw-read"/"raw-write" error.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
