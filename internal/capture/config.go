package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Defaults, in one place; docs/operations.md lists the same values.
const (
	DefaultProxyPort          = 15001
	DefaultInboundCapturePort = 15006
	DefaultProxyUID           = 1337
	// DefaultExcludeInboundPorts are never captured inbound: the proxy's
	// admin port (15000) and the ports Istio reserves for its agent's
	// health and telemetry endpoints (15020, 15021, 15090), so that
	// probes and scrapers reach what listens there directly.
	DefaultExcludeInboundPorts = "15000,15020,15021,15090"
)

// Addresses the rules treat specially, per family.
var (
	// InboundPassthroughSourceV4 is the source address the proxy's
	// inbound passthrough binds (an ORIGINAL_DST cluster with
	// source_address: 127.0.0.6): its connections to the pod's own IP
	// leave over lo and must not be captured again.
	InboundPassthroughSourceV4 = netip.MustParseAddr("127.0.0.6")
	InboundPassthroughSourceV6 = netip.MustParseAddr("::6")
)

// Config is what the capture rules are made of. The zero value captures
// nothing; NewConfig returns the defaults.
type Config struct {
	// ProxyPort receives redirected outbound connections (the proxy's
	// use_original_dst listener).
	ProxyPort uint16
	// InboundCapturePort receives redirected inbound connections.
	InboundCapturePort uint16
	// ProxyUIDs and ProxyGIDs own the proxy's process: its own outbound
	// connections are never redirected. At least one is required.
	ProxyUIDs, ProxyGIDs []uint32
	// InboundPorts are the captured inbound destination ports; AllInbound
	// captures every port except ExcludeInboundPorts.
	AllInbound          bool
	InboundPorts        []uint16
	ExcludeInboundPorts []uint16
	// ExcludeOutboundPorts are outbound destination ports never captured.
	ExcludeOutboundPorts []uint16
	// OutboundCIDRs are the captured outbound destinations; AllOutbound
	// captures every one. ExcludeOutboundCIDRs are never captured.
	AllOutbound          bool
	OutboundCIDRs        []netip.Prefix
	ExcludeOutboundCIDRs []netip.Prefix
	// IPv6 also installs the rules with ip6tables.
	IPv6 bool
}

// NewConfig returns the default configuration: ports 15001 and 15006,
// proxy uid and gid 1337, every inbound port but the default exclusions,
// every outbound destination.
func NewConfig() Config {
	ex, _ := ParsePorts("exclude-inbound-ports", DefaultExcludeInboundPorts)
	return Config{
		ProxyPort:           DefaultProxyPort,
		InboundCapturePort:  DefaultInboundCapturePort,
		ProxyUIDs:           []uint32{DefaultProxyUID},
		ProxyGIDs:           []uint32{DefaultProxyUID},
		AllInbound:          true,
		ExcludeInboundPorts: ex,
		AllOutbound:         true,
	}
}

// Validate reports every problem of c, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("capture: --%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if c.ProxyPort == 0 {
		bad("proxy-port", "required")
	}
	if c.InboundCapturePort == 0 {
		bad("inbound-capture-port", "required")
	}
	if c.ProxyPort != 0 && c.ProxyPort == c.InboundCapturePort {
		bad("inbound-capture-port", "%d is also --proxy-port: inbound and outbound connections need different listeners", c.ProxyPort)
	}
	if len(c.ProxyUIDs) == 0 && len(c.ProxyGIDs) == 0 {
		bad("proxy-uid", "the proxy's uid or gid is required: without it the proxy's own connections would be redirected to itself")
	}
	if !c.IPv6 {
		for _, p := range c.OutboundCIDRs {
			if p.Addr().Is6() {
				bad("include-outbound-cidrs", "%s is IPv6, which needs --ipv6", p)
			}
		}
	}
	return errors.Join(errs...)
}

// ParsePorts parses a comma-separated list of ports (1-65535), sorted and
// without duplicates. The empty string is the empty list. Errors name
// flag and the bad value.
func ParsePorts(flag, s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("capture: --%s: %q is not a port (1-65535)", flag, f)
		}
		out = append(out, uint16(n))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParsePortsOrAll parses "*" (all = true) or a port list.
func ParsePortsOrAll(flag, s string) (all bool, ports []uint16, err error) {
	if strings.TrimSpace(s) == "*" {
		return true, nil, nil
	}
	ports, err = ParsePorts(flag, s)
	return false, ports, err
}

// ParseCIDRs parses "*" (all = true) or a comma-separated list of CIDRs
// (an address without a length is a single host: /32 or /128). Prefixes
// are masked, sorted and without duplicates.
func ParseCIDRs(flag, s string) (all bool, cidrs []netip.Prefix, err error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return true, nil, nil
	}
	if s == "" {
		return false, nil, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		var p netip.Prefix
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(f); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil || p.Addr().Zone() != "" {
			return false, nil, fmt.Errorf("capture: --%s: %q is not a CIDR (like 10.0.0.0/8 or fd00::/8) or \"*\"", flag, f)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		cidrs = append(cidrs, p.Masked())
	}
	slices.SortFunc(cidrs, comparePrefix)
	return false, slices.Compact(cidrs), nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// ParseIDs parses a comma-separated list of numeric uids or gids.
func ParseIDs(flag, s string) ([]uint32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("capture: --%s: %q is not a numeric id", flag, f)
		}
		out = append(out, uint32(n))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// parsePort parses one port for a flag.
func parsePort(flag, s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("capture: --%s: %q is not a port (1-65535)", flag, s)
	}
	return uint16(n), nil
}

// Flags are the command-line values of `remora iptables`, as strings.
type Flags struct {
	ProxyPort, InboundCapturePort              string
	ProxyUID, ProxyGID                         string
	IncludeInboundPorts, ExcludeInboundPorts   string
	ExcludeOutboundPorts                       string
	IncludeOutboundCIDRs, ExcludeOutboundCIDRs string
	IPv6                                       bool
}

// DefaultFlags are the flags' default values. ProxyGID empty means the
// same as ProxyUID.
func DefaultFlags() Flags {
	return Flags{
		ProxyPort:            strconv.Itoa(DefaultProxyPort),
		InboundCapturePort:   strconv.Itoa(DefaultInboundCapturePort),
		ProxyUID:             strconv.Itoa(DefaultProxyUID),
		IncludeInboundPorts:  "*",
		ExcludeInboundPorts:  DefaultExcludeInboundPorts,
		IncludeOutboundCIDRs: "*",
	}
}

// ParseFlags turns f into a validated Config, reporting every bad flag.
func ParseFlags(f Flags) (Config, error) {
	var c Config
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	c.ProxyPort, err = parsePort("proxy-port", f.ProxyPort)
	add(err)
	c.InboundCapturePort, err = parsePort("inbound-capture-port", f.InboundCapturePort)
	add(err)
	c.ProxyUIDs, err = ParseIDs("proxy-uid", f.ProxyUID)
	add(err)
	gid := f.ProxyGID
	if strings.TrimSpace(gid) == "" {
		gid = f.ProxyUID
	}
	c.ProxyGIDs, err = ParseIDs("proxy-gid", gid)
	add(err)
	c.AllInbound, c.InboundPorts, err = ParsePortsOrAll("include-inbound-ports", f.IncludeInboundPorts)
	add(err)
	c.ExcludeInboundPorts, err = ParsePorts("exclude-inbound-ports", f.ExcludeInboundPorts)
	add(err)
	c.ExcludeOutboundPorts, err = ParsePorts("exclude-outbound-ports", f.ExcludeOutboundPorts)
	add(err)
	c.AllOutbound, c.OutboundCIDRs, err = ParseCIDRs("include-outbound-cidrs", f.IncludeOutboundCIDRs)
	add(err)
	var all bool
	all, c.ExcludeOutboundCIDRs, err = ParseCIDRs("exclude-outbound-cidrs", f.ExcludeOutboundCIDRs)
	add(err)
	if all {
		add(errors.New(`capture: --exclude-outbound-cidrs: "*" would exclude everything; leave --include-outbound-cidrs empty instead`))
	}
	c.IPv6 = f.IPv6
	if len(errs) == 0 {
		add(c.Validate())
	}
	return c, errors.Join(errs...)
}
