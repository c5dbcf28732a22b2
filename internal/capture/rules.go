package capture

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Chains, all in the nat table.
const (
	Table           = "nat"
	ChainOutput     = "REMORA_OUTPUT"      // from OUTPUT: what the pod sends
	ChainRedirect   = "REMORA_REDIRECT"    // REDIRECT to the proxy port
	ChainInbound    = "REMORA_INBOUND"     // from PREROUTING: what the pod receives
	ChainInRedirect = "REMORA_IN_REDIRECT" // REDIRECT to the inbound capture port
)

// chains in creation order (REDIRECT targets first, so every jump has its
// target when rules are added one by one).
var chains = []string{ChainRedirect, ChainInRedirect, ChainInbound, ChainOutput}

// Family is IPv4 (iptables) or IPv6 (ip6tables).
type Family int

const (
	IPv4 Family = iota
	IPv6
)

func (f Family) tool() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

func (f Family) loopback() string {
	if f == IPv6 {
		return "::1/128"
	}
	return "127.0.0.1/32"
}

func (f Family) passthroughSource() string {
	if f == IPv6 {
		return InboundPassthroughSourceV6.String() + "/128"
	}
	return InboundPassthroughSourceV4.String() + "/32"
}

func (f Family) has(p netip.Prefix) bool { return p.Addr().Is6() == (f == IPv6) }

// Rule is one rule appended to Chain ("-A Chain Args...").
type Rule struct {
	Chain string
	Args  []string
}

// Rules returns the capture rules of one family, in order, for a valid
// config. It is a pure function.
//
// OUTPUT jumps to REMORA_OUTPUT for TCP, which in order:
//  1. lets excluded outbound ports through;
//  2. lets the inbound passthrough (source 127.0.0.6, over lo) through;
//  3. for each proxy uid, then gid: sends the proxy's connections over lo
//     to a non-loopback address (the pod calling its own IP through the
//     proxy) to the inbound capture port; lets other connections over lo
//     through (the application talking to itself); lets every other
//     connection of the proxy through;
//  4. lets connections to the loopback address through;
//  5. lets excluded CIDRs through, and redirects the included ones (every
//     destination with "*") to the proxy port.
//
// PREROUTING jumps to REMORA_INBOUND for TCP, which redirects the
// included ports (every port but the excluded ones with "*") to the
// inbound capture port.
func Rules(c *Config, f Family) []Rule {
	var rs []Rule
	add := func(chain string, args ...string) { rs = append(rs, Rule{chain, args}) }
	add(ChainRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(int(c.ProxyPort)))
	add(ChainInRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(int(c.InboundCapturePort)))

	// Inbound.
	inbound := false
	if c.AllInbound {
		for _, p := range c.ExcludeInboundPorts {
			add(ChainInbound, "-p", "tcp", "--dport", strconv.Itoa(int(p)), "-j", "RETURN")
		}
		add(ChainInbound, "-p", "tcp", "-j", ChainInRedirect)
		inbound = true
	} else {
		for _, p := range c.InboundPorts {
			if !containsPort(c.ExcludeInboundPorts, p) {
				add(ChainInbound, "-p", "tcp", "--dport", strconv.Itoa(int(p)), "-j", ChainInRedirect)
				inbound = true
			}
		}
	}
	if inbound {
		add("PREROUTING", "-p", "tcp", "-j", ChainInbound)
	}

	// Outbound.
	for _, p := range c.ExcludeOutboundPorts {
		add(ChainOutput, "-p", "tcp", "--dport", strconv.Itoa(int(p)), "-j", "RETURN")
	}
	add(ChainOutput, "-o", "lo", "-s", f.passthroughSource(), "-j", "RETURN")
	owner := func(kind string, ids []uint32) {
		for _, id := range ids {
			v := strconv.FormatUint(uint64(id), 10)
			add(ChainOutput, "-o", "lo", "!", "-d", f.loopback(), "-m", "owner", "--"+kind+"-owner", v, "-j", ChainInRedirect)
			add(ChainOutput, "-o", "lo", "-m", "owner", "!", "--"+kind+"-owner", v, "-j", "RETURN")
			add(ChainOutput, "-m", "owner", "--"+kind+"-owner", v, "-j", "RETURN")
		}
	}
	owner("uid", c.ProxyUIDs)
	owner("gid", c.ProxyGIDs)
	add(ChainOutput, "-d", f.loopback(), "-j", "RETURN")
	for _, p := range c.ExcludeOutboundCIDRs {
		if f.has(p) {
			add(ChainOutput, "-d", p.String(), "-j", "RETURN")
		}
	}
	if c.AllOutbound {
		add(ChainOutput, "-j", ChainRedirect)
	} else {
		for _, p := range c.OutboundCIDRs {
			if f.has(p) {
				add(ChainOutput, "-d", p.String(), "-j", ChainRedirect)
			}
		}
	}
	add("OUTPUT", "-p", "tcp", "-j", ChainOutput)
	return rs
}

func containsPort(ps []uint16, p uint16) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// Command is one process to run.
type Command struct {
	Name string
	Args []string
	// Stdin is fed to the process (the iptables-restore ruleset).
	Stdin string
	// IgnoreError marks cleanup steps whose target may not exist.
	IgnoreError bool
}

// Script is an ordered list of commands.
type Script []Command

// String renders s as a POSIX shell script: what --dry-run prints.
func (s Script) String() string {
	var b strings.Builder
	for _, c := range s {
		b.WriteString(c.Name)
		for _, a := range c.Args {
			b.WriteByte(' ')
			b.WriteString(shellQuote(a))
		}
		if c.IgnoreError {
			b.WriteString(" 2>/dev/null || true")
		}
		if c.Stdin != "" {
			b.WriteString(" <<'EOF'\n")
			b.WriteString(c.Stdin)
			b.WriteString("EOF")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// shellQuote quotes a for a shell when it holds anything but safe
// characters ("!" included).
func shellQuote(a string) string {
	safe := a != ""
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:,=", r)) {
			safe = false
			break
		}
	}
	if safe {
		return a
	}
	return "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
}

// Mode chooses how rules are installed.
type Mode int

const (
	// Restore installs each family's rules with one iptables-restore
	// --noflush run: all or nothing.
	Restore Mode = iota
	// Individual runs one iptables command per chain and rule.
	Individual
)

// families returns the families c installs.
func (c *Config) families() []Family {
	if c.IPv6 {
		return []Family{IPv4, IPv6}
	}
	return []Family{IPv4}
}

// Plan returns the commands that install c's rules: first a cleanup of
// any earlier ones (so installing twice leaves one copy), then the rules.
// c must be valid. It is a pure function.
func Plan(c *Config, mode Mode) Script {
	s := Cleanup(c.IPv6)
	for _, f := range c.families() {
		rules := Rules(c, f)
		if mode == Restore {
			s = append(s, Command{Name: f.tool() + "-restore", Args: []string{"--noflush"}, Stdin: restoreInput(rules)})
			continue
		}
		for _, ch := range chains {
			s = append(s, Command{Name: f.tool(), Args: []string{"-t", Table, "-N", ch}})
		}
		for _, r := range rules {
			s = append(s, Command{Name: f.tool(), Args: append([]string{"-t", Table, "-A", r.Chain}, r.Args...)})
		}
	}
	return s
}

// restoreInput renders rules as an iptables-restore ruleset for the nat
// table (used with --noflush: other chains are left alone; ours are
// declared, which creates or empties them).
func restoreInput(rules []Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", Table)
	for _, ch := range chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", ch)
	}
	for _, r := range rules {
		b.WriteString("-A ")
		b.WriteString(r.Chain)
		for _, a := range r.Args {
			b.WriteByte(' ')
			b.WriteString(a)
		}
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Cleanup returns the commands that remove every capture rule and chain
// (of IPv6 too when ipv6); each may fail because its target is already
// gone, so running them is idempotent. It is a pure function.
func Cleanup(ipv6 bool) Script {
	fams := []Family{IPv4}
	if ipv6 {
		fams = append(fams, IPv6)
	}
	var s Script
	for _, f := range fams {
		t := f.tool()
		s = append(s,
			Command{Name: t, Args: []string{"-t", Table, "-D", "PREROUTING", "-p", "tcp", "-j", ChainInbound}, IgnoreError: true},
			Command{Name: t, Args: []string{"-t", Table, "-D", "OUTPUT", "-p", "tcp", "-j", ChainOutput}, IgnoreError: true})
		for _, ch := range chains {
			s = append(s, Command{Name: t, Args: []string{"-t", Table, "-F", ch}, IgnoreError: true})
		}
		for _, ch := range chains {
			s = append(s, Command{Name: t, Args: []string{"-t", Table, "-X", ch}, IgnoreError: true})
		}
	}
	return s
}
