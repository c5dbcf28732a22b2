//go:build !linux

package sockio

import "net"

// Wrap returns c: raw-syscall socket I/O is implemented for Linux only.
func Wrap(c net.Conn) net.Conn { return c }

// TCP returns the *net.TCPConn c is.
func TCP(c net.Conn) (*net.TCPConn, bool) {
	tc, ok := c.(*net.TCPConn)
	return tc, ok
}
