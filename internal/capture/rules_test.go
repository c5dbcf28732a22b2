package capture

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal([]byte(got), want) {
		t.Fatalf("%s differs:\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestPlanGolden renders the install script of several flag sets in both
// modes, and the cleanup script, and compares them with testdata.
func TestPlanGolden(t *testing.T) {
	custom := DefaultFlags()
	custom.ProxyUID, custom.ProxyGID = "1337,1338", "1339"
	custom.IncludeInboundPorts, custom.ExcludeInboundPorts = "9080,8080,15000", "15000"
	custom.ExcludeOutboundPorts = "5432,22"
	custom.IncludeOutboundCIDRs, custom.ExcludeOutboundCIDRs = "10.0.0.0/8,172.16.0.0/12,fd00::/8", "10.96.0.10,fd00::1"
	custom.IPv6 = true
	noInbound := DefaultFlags()
	noInbound.IncludeInboundPorts, noInbound.IncludeOutboundCIDRs = "", ""
	for _, tc := range []struct {
		name  string
		flags Flags
	}{
		{"default", DefaultFlags()},
		{"custom", custom},
		{"nothing_captured", noInbound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseFlags(tc.flags)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".restore.sh", Plan(&c, Restore).String())
			golden(t, tc.name+".individual.sh", Plan(&c, Individual).String())
		})
	}
	golden(t, "cleanup.sh", Cleanup(true).String())
}

func TestParseFlagsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Flags)
		want string
	}{
		{"proxy port", func(f *Flags) { f.ProxyPort = "0" }, `capture: --proxy-port: "0" is not a port (1-65535)`},
		{"capture port", func(f *Flags) { f.InboundCapturePort = "http" }, `capture: --inbound-capture-port: "http" is not a port (1-65535)`},
		{"same ports", func(f *Flags) { f.InboundCapturePort = "15001" }, `capture: --inbound-capture-port: 15001 is also --proxy-port: inbound and outbound connections need different listeners`},
		{"uid", func(f *Flags) { f.ProxyUID = "istio-proxy" }, `capture: --proxy-uid: "istio-proxy" is not a numeric id` + "\n" + `capture: --proxy-gid: "istio-proxy" is not a numeric id`},
		{"gid", func(f *Flags) { f.ProxyGID = "-1" }, `capture: --proxy-gid: "-1" is not a numeric id`},
		{"no owner", func(f *Flags) { f.ProxyUID = "" }, `capture: --proxy-uid: the proxy's uid or gid is required: without it the proxy's own connections would be redirected to itself`},
		{"inbound ports", func(f *Flags) { f.IncludeInboundPorts = "80,,90" }, `capture: --include-inbound-ports: "" is not a port (1-65535)`},
		{"exclude inbound", func(f *Flags) { f.ExcludeInboundPorts = "65536" }, `capture: --exclude-inbound-ports: "65536" is not a port (1-65535)`},
		{"exclude outbound", func(f *Flags) { f.ExcludeOutboundPorts = "*" }, `capture: --exclude-outbound-ports: "*" is not a port (1-65535)`},
		{"cidr", func(f *Flags) { f.IncludeOutboundCIDRs = "10.0.0.0/33" }, `capture: --include-outbound-cidrs: "10.0.0.0/33" is not a CIDR (like 10.0.0.0/8 or fd00::/8) or "*"`},
		{"exclude all", func(f *Flags) { f.ExcludeOutboundCIDRs = "*" }, `capture: --exclude-outbound-cidrs: "*" would exclude everything; leave --include-outbound-cidrs empty instead`},
		{"ipv6 cidr", func(f *Flags) { f.IncludeOutboundCIDRs = "fd00::/8" }, `capture: --include-outbound-cidrs: fd00::/8 is IPv6, which needs --ipv6`},
		{"several", func(f *Flags) { f.ProxyPort, f.ExcludeOutboundCIDRs = "x", "nope" },
			`capture: --proxy-port: "x" is not a port (1-65535)` + "\n" + `capture: --exclude-outbound-cidrs: "nope" is not a CIDR (like 10.0.0.0/8 or fd00::/8) or "*"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := DefaultFlags()
			tc.edit(&f)
			_, err := ParseFlags(f)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestParseCIDRs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.1.2.3/8, 10.0.0.0/8", "10.0.0.0/8"},
		{"192.168.1.1", "192.168.1.1/32"},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},
		{"fd00::1/8,10.0.0.1", "10.0.0.1/32 fd00::/8"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, ps, err := ParseCIDRs("x", tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("got %v, want %s", got, tc.want)
			}
		})
	}
}

func TestRunStopsOnError(t *testing.T) {
	s := Script{
		{Name: "false", IgnoreError: true},
		{Name: "sh", Args: []string{"-c", "cat; exit 3"}, Stdin: "ruleset\n"},
		{Name: "true"},
	}
	err := Run(context.Background(), s, nil)
	want := `capture: sh -c 'cat; exit 3': exit status 3: ruleset`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// FuzzParse feeds every parser arbitrary input: none may panic, and a
// value that parses renders to a form that parses to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"*", "", "80,443", "15000,15020,15021,15090", "10.0.0.0/8,fd00::/8", "1.2.3.4", "::ffff:1.2.3.4/120", "1337,0", " 80 , 81 ", "fe80::1%eth0/64", "65535,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, ps, err := ParsePortsOrAll("p", s); err == nil && ps != nil {
			again, err := ParsePorts("p", joinPorts(ps))
			if err != nil || len(again) != len(ps) {
				t.Fatalf("ports %v do not round-trip: %v %v", ps, again, err)
			}
		}
		if all, cs, err := ParseCIDRs("c", s); err == nil && !all && cs != nil {
			var parts []string
			for _, p := range cs {
				parts = append(parts, p.String())
			}
			_, again, err := ParseCIDRs("c", strings.Join(parts, ","))
			if err != nil || len(again) != len(cs) {
				t.Fatalf("cidrs %v do not round-trip: %v %v", cs, again, err)
			}
			for i := range cs {
				if again[i] != cs[i] {
					t.Fatalf("cidr %v became %v", cs[i], again[i])
				}
			}
		}
		if ids, err := ParseIDs("u", s); err == nil && ids != nil {
			var parts []string
			for _, id := range ids {
				parts = append(parts, strconv.FormatUint(uint64(id), 10))
			}
			again, err := ParseIDs("u", strings.Join(parts, ","))
			if err != nil || len(again) != len(ids) {
				t.Fatalf("ids %v do not round-trip: %v %v", ids, again, err)
			}
		}
		fl := DefaultFlags()
		fl.IncludeInboundPorts, fl.ExcludeOutboundCIDRs = s, s
		if c, err := ParseFlags(fl); err == nil {
			_ = Plan(&c, Restore).String()
		}
	})
}

func joinPorts(ps []uint16) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = strconv.Itoa(int(p))
	}
	return strings.Join(parts, ",")
}
