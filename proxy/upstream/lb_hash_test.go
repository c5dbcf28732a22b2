package upstream

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

func hashHosts(weights ...uint32) []*Host {
	c := &Cluster{protocol: ProtocolHTTP1}
	hosts := make([]*Host, len(weights))
	for i, w := range weights {
		hosts[i] = &Host{cluster: c, addr: fmt.Sprintf("10.0.0.%d:80", i+1), weight: w}
	}
	return hosts
}

func TestHashLBConsistency(t *testing.T) {
	for _, policy := range []string{LBRingHash, LBMaglev} {
		t.Run(policy, func(t *testing.T) {
			build := lbFactories[policy]
			hosts := hashHosts(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
			a, b := build(hosts), build(hashHosts(1, 1, 1, 1, 1, 1, 1, 1, 1, 1))
			r := rand.New(rand.NewPCG(1, 2))
			keys := make([]uint64, 20000)
			for i := range keys {
				keys[i] = r.Uint64()
			}
			for _, k := range keys {
				c := LBContext{HashKey: k, HasHashKey: true}
				first, again := a.Pick(c), a.Pick(c)
				if first != again {
					t.Fatal("the same key picked two hosts")
				}
				if a.Pick(c).addr != b.Pick(c).addr {
					t.Fatal("two builds over the same hosts disagree")
				}
			}

			// Remove the last host: keys on the others should stay put.
			smaller := build(hosts[:9])
			moved, kept := 0, 0
			for _, k := range keys {
				c := LBContext{HashKey: k, HasHashKey: true}
				before := a.Pick(c)
				if before == hosts[9] {
					continue
				}
				if smaller.Pick(c) == before {
					kept++
				} else {
					moved++
				}
			}
			// Ring hash moves none of them; Maglev a few percent at most.
			limit := 0.0
			if policy == LBMaglev {
				limit = 0.05
			}
			if frac := float64(moved) / float64(moved+kept); frac > limit {
				t.Fatalf("%.1f%% of the keys of remaining hosts moved", 100*frac)
			}
		})
	}
}

func TestHashLBWeights(t *testing.T) {
	for _, policy := range []string{LBRingHash, LBMaglev} {
		t.Run(policy, func(t *testing.T) {
			hosts := hashHosts(1, 3)
			lb := lbFactories[policy](hosts)
			r := rand.New(rand.NewPCG(3, 4))
			const n = 100000
			heavy := 0
			for range n {
				if lb.Pick(LBContext{HashKey: r.Uint64(), HasHashKey: true}) == hosts[1] {
					heavy++
				}
			}
			if share := float64(heavy) / n; share < 0.70 || share > 0.80 {
				t.Fatalf("weight-3 host got %.1f%% of keys, want about 75%%", 100*share)
			}
			// Without a hash key every host is reachable.
			seen := map[*Host]bool{}
			for range 200 {
				seen[lb.Pick(LBContext{})] = true
			}
			if len(seen) != 2 {
				t.Fatalf("random fallback reached %d hosts", len(seen))
			}
		})
	}
}

func BenchmarkHashLBPick(b *testing.B) {
	for _, policy := range []string{LBRingHash, LBMaglev} {
		b.Run(policy, func(b *testing.B) {
			lb := lbFactories[policy](hashHosts(1, 2, 3, 4, 5, 6, 7, 8))
			b.ReportAllocs()
			var k uint64
			for b.Loop() {
				k++
				lb.Pick(LBContext{HashKey: k, HasHashKey: true})
			}
		})
	}
}

func BenchmarkHashLBBuild(b *testing.B) {
	for _, policy := range []string{LBRingHash, LBMaglev} {
		b.Run(policy, func(b *testing.B) {
			hosts := hashHosts(1, 2, 3, 4, 5, 6, 7, 8)
			b.ReportAllocs()
			for b.Loop() {
				lbFactories[policy](hosts)
			}
		})
	}
}

func TestRingHashClusterStickiness(t *testing.T) {
	var addrs []string
	for range 3 {
		addrs = append(addrs, newCountingServer(t, okHandler("ok")).addr())
	}
	cfg := staticCluster("sticky", addrs...)
	cfg.LBPolicy = LBRingHash
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("sticky")
	seen := map[string]bool{}
	for key := range uint64(30) {
		var first string
		for range 3 {
			var info filter.StreamInfo
			roundTrip(t, c, reqHeaders("GET", "/", "sticky"), nil,
				StreamOptions{Info: &info, LB: LBContext{HashKey: key * 0x9e3779b97f4a7c15, HasHashKey: true}})
			if first == "" {
				first = info.UpstreamHost
			} else if info.UpstreamHost != first {
				t.Fatalf("key %d went to %s and %s", key, first, info.UpstreamHost)
			}
		}
		seen[first] = true
	}
	if len(seen) != 3 {
		t.Fatalf("30 keys reached %d of 3 hosts", len(seen))
	}
}
