package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/remora-mesh/remora/internal/sockio"
)

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST from
// <linux/netfilter_ipv6/ip6_tables.h> (x/sys/unix does not define it).
const ip6tSoOriginalDst = 80

// originalDstSupported reports whether the original_dst listener filter
// can run on this platform.
func originalDstSupported() error { return nil }

// originalDst returns the destination c had before an iptables REDIRECT
// (or DNAT) rewrote it: getsockopt SO_ORIGINAL_DST (level SOL_IP) for an
// IPv4 connection, IP6T_SO_ORIGINAL_DST (level SOL_IPV6) for an IPv6 one.
// It works on the socket through SyscallConn().Control, so no descriptor
// is duplicated. A connection conntrack does not know (no nat rule saw
// it) fails with ENOENT; a connection that was not rewritten returns its
// own local address.
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := sockio.TCP(c)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original_dst: %T is not a TCP connection", c)
	}
	local, _ := tc.LocalAddr().(*net.TCPAddr)
	if local == nil {
		return netip.AddrPort{}, errors.New("original_dst: connection has no local address")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original_dst: %w", err)
	}
	v4 := local.IP.To4() != nil // IPv4, also v4-mapped on a dual-stack socket
	var dst netip.AddrPort
	var serr error
	if err := raw.Control(func(fd uintptr) { dst, serr = getOriginalDst(int(fd), v4) }); err != nil {
		return netip.AddrPort{}, fmt.Errorf("original_dst: %w", err)
	}
	return dst, serr
}

func getOriginalDst(fd int, v4 bool) (netip.AddrPort, error) {
	if v4 {
		// The kernel fills a struct sockaddr_in (16 bytes); IPv6Mreq is
		// the x/sys getter with a large enough buffer. Port and address
		// are in network byte order.
		m, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("original_dst: getsockopt SO_ORIGINAL_DST: %w", err)
		}
		b := m.Multiaddr
		if fam := binary.NativeEndian.Uint16(b[0:2]); fam != unix.AF_INET {
			return netip.AddrPort{}, fmt.Errorf("original_dst: SO_ORIGINAL_DST returned address family %d", fam)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
	}
	// A struct sockaddr_in6 (28 bytes) fills IPv6MTUInfo's Addr.
	mi, err := unix.GetsockoptIPv6MTUInfo(fd, unix.SOL_IPV6, ip6tSoOriginalDst)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original_dst: getsockopt IP6T_SO_ORIGINAL_DST: %w", err)
	}
	sa := mi.Addr
	if sa.Family != unix.AF_INET6 {
		return netip.AddrPort{}, fmt.Errorf("original_dst: IP6T_SO_ORIGINAL_DST returned address family %d", sa.Family)
	}
	var port [2]byte
	binary.NativeEndian.PutUint16(port[:], sa.Port) // the field holds network-order bytes
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16(port[:])), nil
}
