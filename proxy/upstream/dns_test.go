package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

func TestStrictDNSResolvesLocalhost(t *testing.T) {
	srv := newCountingServer(t, okHandler("ok"))
	_, port, _ := net.SplitHostPort(srv.addr())
	m := newTestManager(t, Options{}, ClusterConfig{
		Name: "dns", Type: TypeStrictDNS, Endpoints: []EndpointConfig{{Address: "localhost:" + port, Weight: 2}},
	})
	c := m.Cluster("dns")
	var addrs []string
	for _, h := range c.Hosts() {
		addrs = append(addrs, h.Address())
		if h.Hostname() != "localhost" || h.Weight() != 2 {
			t.Fatalf("host %s hostname %q weight %d", h.Address(), h.Hostname(), h.Weight())
		}
	}
	if !slices.Contains(addrs, "127.0.0.1:"+port) {
		t.Fatalf("localhost resolved to %v", addrs)
	}
	if statOf(c, statUpdateSuccess) != 1 || statOf(c, statMembershipTotal) != int64(len(addrs)) {
		t.Fatalf("update_success %d membership_total %d", statOf(c, statUpdateSuccess), statOf(c, statMembershipTotal))
	}
}

// scriptedResolver answers from a table that the test changes; a name
// absent from it fails as a real lookup of an unknown name does.
type scriptedResolver struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	calls   int
}

func (r *scriptedResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if a, ok := r.answers[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *scriptedResolver) set(host string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if addrs == nil {
		delete(r.answers, host)
		return
	}
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	r.answers[host] = as
}

func TestStrictDNSRefresh(t *testing.T) {
	res := &scriptedResolver{answers: map[string][]netip.Addr{}}
	res.set("svc.local", "127.0.0.1")
	srv := newCountingServer(t, okHandler("ok"))
	_, port, _ := net.SplitHostPort(srv.addr())
	cfg := ClusterConfig{Name: "dns", Type: TypeStrictDNS, Endpoints: []EndpointConfig{{Address: "svc.local:" + port}}}
	cfg.DNSRefreshRate.UnmarshalYAML(yamlScalar("5ms"))
	m := newTestManager(t, Options{Resolver: res}, cfg)
	c := m.Cluster("dns")
	hostAddrs := func() string {
		var s []string
		for _, h := range c.Hosts() {
			s = append(s, h.Address())
		}
		return strings.Join(s, ",")
	}
	if got := hostAddrs(); got != "127.0.0.1:"+port {
		t.Fatalf("hosts %s", got)
	}
	roundTrip(t, c, reqHeaders("GET", "/", "svc"), nil, StreamOptions{})
	first := c.Hosts()[0]

	// A second address appears: the first host (and its pooled
	// connection) is kept.
	res.set("svc.local", "127.0.0.2", "127.0.0.1", "::ffff:127.0.0.1")
	want := "127.0.0.1:" + port + ",127.0.0.2:" + port
	waitFor(t, "the new host set", func() bool { return hostAddrs() == want })
	if c.Hosts()[0] != first {
		t.Fatal("the surviving host was replaced")
	}
	if ready, _, _, _ := first.h1.counts(); ready != 1 {
		t.Fatal("the surviving host lost its connection")
	}

	// Resolution fails: the hosts stay and the failure is counted.
	res.set("svc.local")
	failures := statOf(c, statUpdateFailure)
	waitFor(t, "a failed refresh", func() bool { return statOf(c, statUpdateFailure) > failures+1 })
	if got := hostAddrs(); got != want {
		t.Fatalf("hosts changed to %s after a DNS failure", got)
	}

	// The first address goes away: its host drains (its idle connection
	// closes) and the other stays.
	res.set("svc.local", "127.0.0.2")
	waitFor(t, "the shrunk host set", func() bool { return hostAddrs() == "127.0.0.2:"+port })
	waitFor(t, "the removed host's connection to close", func() bool { return statOf(c, statCxActive) == 0 })
	if statOf(c, statMembershipChange) != 3 || statOf(c, statMembershipTotal) != 1 {
		t.Fatalf("membership_change %d total %d", statOf(c, statMembershipChange), statOf(c, statMembershipTotal))
	}
}

func TestStrictDNSInitialFailure(t *testing.T) {
	res := &scriptedResolver{answers: map[string][]netip.Addr{}}
	cfg := ClusterConfig{Name: "dns", Type: TypeStrictDNS, Endpoints: []EndpointConfig{{Address: "later.local:80"}}}
	cfg.DNSRefreshRate.UnmarshalYAML(yamlScalar("5ms"))
	m := newTestManager(t, Options{Resolver: res}, cfg)
	c := m.Cluster("dns")
	_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{})
	if !errors.Is(err, ErrNoHealthyUpstream) || flagOf(err) != filter.NoHealthyUpstream {
		t.Fatalf("err %v, want UH", err)
	}
	res.set("later.local", "127.0.0.1")
	waitFor(t, "the name to resolve", func() bool { return len(c.Hosts()) == 1 })
}

func TestFilterFamily(t *testing.T) {
	parse := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	tests := []struct {
		family string
		in     []string
		want   string
	}{
		{DNSV4Preferred, []string{"::1", "127.0.0.1"}, "127.0.0.1"},
		{DNSV4Preferred, []string{"::1"}, "::1"},
		{DNSAuto, []string{"127.0.0.1", "::1"}, "::1"},
		{DNSAuto, []string{"127.0.0.1"}, "127.0.0.1"},
		{DNSV4Only, []string{"::1", "10.0.0.1"}, "10.0.0.1"},
		{DNSV6Only, []string{"::1", "10.0.0.1"}, "::1"},
		{DNSV6Only, []string{"10.0.0.1"}, ""},
		{DNSAll, []string{"::1", "10.0.0.1"}, "::1,10.0.0.1"},
		{DNSV4Preferred, []string{"::ffff:10.0.0.1", "::2"}, "::ffff:10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.family+"/"+strings.Join(tt.in, ","), func(t *testing.T) {
			var got []string
			for _, a := range filterFamily(parse(tt.in...), tt.family) {
				got = append(got, a.String())
			}
			if strings.Join(got, ",") != tt.want {
				t.Fatalf("got %v, want %s", got, tt.want)
			}
		})
	}
}

func TestStrictDNSLocalhostIsOneHostByDefault(t *testing.T) {
	res := &scriptedResolver{answers: map[string][]netip.Addr{}}
	res.set("localhost", "::1", "127.0.0.1")
	m := newTestManager(t, Options{Resolver: res}, ClusterConfig{
		Name: "dns", Type: TypeStrictDNS, Endpoints: []EndpointConfig{{Address: "localhost:80"}},
	}, ClusterConfig{
		Name: "all", Type: TypeStrictDNS, DNSLookupFamily: DNSAll, Endpoints: []EndpointConfig{{Address: "localhost:80"}},
	})
	if hosts := m.Cluster("dns").Hosts(); len(hosts) != 1 || hosts[0].Address() != "127.0.0.1:80" {
		t.Fatalf("V4_PREFERRED hosts %v", hosts)
	}
	if hosts := m.Cluster("all").Hosts(); len(hosts) != 2 || hosts[0].Address() != "127.0.0.1:80" || hosts[1].Address() != "[::1]:80" {
		t.Fatalf("ALL hosts: %d", len(hosts))
	}
}
