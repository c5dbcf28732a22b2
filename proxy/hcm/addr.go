package hcm

import "net/netip"

func netipAddrPort(s string) (netip.AddrPort, error) { return netip.ParseAddrPort(s) }
