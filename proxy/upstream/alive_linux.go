package upstream

import "syscall"

// alive reports whether an idle pooled connection may carry a request: the
// peer has not closed it and sent nothing unsolicited. It costs one
// non-blocking recv(MSG_PEEK) and no goroutine. HTTP/2 connections are
// checked by their ClientConn instead.
func (pc *pconn) alive() bool {
	if pc.cc != nil {
		return pc.cc.CanTakeNewRequest()
	}
	if pc.h1.br.Buffered() > 0 {
		return false
	}
	sc, ok := pc.nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := true
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// EAGAIN: nothing to read, the connection is fine. Anything
		// else is an error, EOF (n == 0) or stray bytes (n > 0).
		if rerr != syscall.EAGAIN {
			alive = false
		}
		return true // never wait for readiness
	})
	return err == nil && alive
}
