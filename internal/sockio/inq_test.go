//go:build linux

package sockio

import "golang.org/x/sys/unix"

// inq is the number of unread bytes in the socket's receive queue.
func inq(fd uintptr) int {
	n, _ := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	return n
}
