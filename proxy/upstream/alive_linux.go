package upstream

import (
	"crypto/tls"
	"syscall"
)

// alive reports whether an idle pooled connection may carry a request: the
// peer has not closed it and sent nothing unsolicited. It costs one
// non-blocking recv(MSG_PEEK), no goroutine and no allocation (the raw
// connection and the callback are made once per connection). HTTP/2
// connections are checked by their ClientConn instead.
func (pc *pconn) alive() bool {
	if pc.cc != nil {
		return pc.cc.CanTakeNewRequest()
	}
	if pc.h1.br.Buffered() > 0 {
		return false
	}
	if pc.peekFn == nil {
		nc := pc.nc
		if tc, ok := nc.(*tls.Conn); ok {
			// Peek below TLS: a close_notify or a closed socket shows
			// there; TLS 1.3 session tickets were read with the first
			// response.
			nc = tc.NetConn()
		}
		sc, ok := nc.(syscall.Conn)
		if !ok {
			return true
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		pc.rawConn = rc
		pc.peekFn = func(fd uintptr) bool {
			_, _, err := syscall.Recvfrom(int(fd), pc.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			// EAGAIN: nothing to read, the connection is fine. Anything
			// else is an error, EOF (n == 0) or stray bytes (n > 0).
			pc.peekAlive = err == syscall.EAGAIN
			return true // never wait for readiness
		}
	}
	return pc.rawConn.Read(pc.peekFn) == nil && pc.peekAlive
}
