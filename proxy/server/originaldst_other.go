//go:build !linux

package server

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
)

var errOriginalDstUnsupported = errors.New("original_dst: recovering a redirected connection's destination needs Linux (SO_ORIGINAL_DST), not " + runtime.GOOS)

// originalDstSupported reports whether the original_dst listener filter
// can run on this platform: not on this one.
func originalDstSupported() error { return errOriginalDstUnsupported }

// originalDst always fails on this platform; New refuses configurations
// that would call it.
func originalDst(net.Conn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errOriginalDstUnsupported
}
