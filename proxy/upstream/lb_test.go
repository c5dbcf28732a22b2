package upstream

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

func lbHosts(weights ...uint32) []*Host {
	c := &Cluster{protocol: ProtocolHTTP1}
	hosts := make([]*Host, len(weights))
	for i, w := range weights {
		hosts[i] = &Host{cluster: c, addr: string(rune('a' + i)), weight: w}
	}
	return hosts
}

func TestRoundRobinSmoothWeighted(t *testing.T) {
	tests := []struct {
		weights []uint32
		want    string // one full cycle
	}{
		{[]uint32{1, 1, 1}, "abc"},
		{[]uint32{5, 1, 1}, "aabacaa"},
		{[]uint32{2, 1}, "aba"},
		{[]uint32{3, 2}, "abab" + "a"},
		{[]uint32{1}, "a"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			lb := newRoundRobin(lbHosts(tt.weights...))
			var got strings.Builder
			for range 3 * len(tt.want) {
				got.WriteString(lb.Pick(LBContext{}).addr)
			}
			if want := strings.Repeat(tt.want, 3); got.String() != want {
				t.Fatalf("sequence %s, want %s", got.String(), want)
			}
		})
	}
}

func TestRoundRobinExactDistribution(t *testing.T) {
	hosts := lbHosts(1, 2, 3, 4)
	lb := newRoundRobin(hosts)
	counts := map[string]int{}
	for range 10 * 100 {
		counts[lb.Pick(LBContext{}).addr]++
	}
	for i, h := range hosts {
		if want := int(h.weight) * 100; counts[h.addr] != want {
			t.Errorf("host %d picked %d times, want %d", i, counts[h.addr], want)
		}
	}
}

func TestLeastRequestPrefersIdleHost(t *testing.T) {
	hosts := lbHosts(1, 1)
	hosts[0].rqActive.Store(3)
	lb := newLeastRequest(hosts)
	for range 1000 {
		if h := lb.Pick(LBContext{}); h != hosts[1] {
			t.Fatalf("picked the busy host")
		}
	}
	// Among many hosts, two choices never pick the busiest.
	many := lbHosts(1, 1, 1, 1, 1)
	for i, h := range many {
		h.rqActive.Store(int64(i))
	}
	lb = newLeastRequest(many)
	for range 1000 {
		if h := lb.Pick(LBContext{}); h == many[4] {
			t.Fatal("picked the busiest host")
		}
	}
}

func TestLeastRequestWeighted(t *testing.T) {
	// Host a has 4 active at weight 4 (1 per unit), b 2 at weight 1: a wins.
	hosts := lbHosts(4, 1)
	hosts[0].rqActive.Store(4)
	hosts[1].rqActive.Store(2)
	lb := newLeastRequest(hosts)
	for range 100 {
		if lb.Pick(LBContext{}) != hosts[0] {
			t.Fatal("weighted comparison ignored")
		}
	}
}

// TestRandomDistribution checks the weighted random policy with a
// chi-squared test at a significance far beyond what chance produces
// (p < 1e-6 for 3 degrees of freedom is chi2 > 30.7).
func TestRandomDistribution(t *testing.T) {
	for _, weights := range [][]uint32{{1, 1, 1, 1}, {1, 2, 3, 4}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			hosts := lbHosts(weights...)
			lb := newRandom(hosts)
			const n = 100000
			counts := map[*Host]int{}
			for range n {
				counts[lb.Pick(LBContext{})]++
			}
			var total uint32
			for _, w := range weights {
				total += w
			}
			chi2 := 0.0
			for _, h := range hosts {
				exp := float64(n) * float64(h.weight) / float64(total)
				d := float64(counts[h]) - exp
				chi2 += d * d / exp
			}
			if chi2 > 30.7 || math.IsNaN(chi2) {
				t.Fatalf("chi2 = %.1f for counts %v", chi2, counts)
			}
		})
	}
}

func BenchmarkLBPick(b *testing.B) {
	for _, policy := range []string{LBRoundRobin, LBLeastRequest, LBRandom} {
		for _, weights := range [][]uint32{{1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 3, 4, 5, 6, 7, 8}} {
			name := policy + "/equal"
			if weights[1] != 1 {
				name = policy + "/weighted"
			}
			b.Run(name, func(b *testing.B) {
				lb := lbFactories[policy](lbHosts(weights...))
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						lb.Pick(LBContext{})
					}
				})
			})
		}
	}
}

// TestLeastRequestClusterAvoidsBusyHost runs LEAST_REQUEST over two real
// hosts: while one holds an unfinished request, new requests go to the
// other.
func TestLeastRequestClusterAvoidsBusyHost(t *testing.T) {
	busy := newBlockingServer(t)
	idle := newCountingServer(t, okHandler("idle"))
	cfg := staticCluster("lr", busy.addr(), idle.addr())
	cfg.LBPolicy = LBLeastRequest
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("lr")

	// Pin one request on the blocking host: retry until the balancer
	// picks it (each pick is 50/50 while both are idle).
	var pinned Stream
	for pinned == nil {
		var info filter.StreamInfo
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "lr"), true, StreamOptions{Info: &info})
		if err != nil {
			t.Fatal(err)
		}
		if info.UpstreamHost == busy.addr() {
			pinned = s
			<-busy.arrived
			continue
		}
		readAllAfterHeaders(t, s)
	}
	for range 50 {
		var info filter.StreamInfo
		_, body, _ := roundTrip(t, c, reqHeaders("GET", "/", "lr"), nil, StreamOptions{Info: &info})
		if info.UpstreamHost != idle.addr() || string(body) != "idle" {
			t.Fatalf("request went to %s while the other host was idle", info.UpstreamHost)
		}
	}
	busy.release <- struct{}{}
	readAllAfterHeaders(t, pinned)
}

func readAllAfterHeaders(t *testing.T, s Stream) {
	t.Helper()
	if _, end, err := s.ReadHeaders(testCtx(t)); err != nil {
		t.Fatal(err)
	} else if !end {
		readAll(t, s)
	}
	s.Close()
}
