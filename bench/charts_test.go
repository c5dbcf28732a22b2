package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testEnv is an env with results of two runs, as a harness run leaves them.
func testEnv(t *testing.T) *env {
	t.Helper()
	o, err := parseOptions([]string{"-runs", "2"})
	if err != nil {
		t.Fatal(err)
	}
	o.img = t.TempDir()
	res := newResults()
	lat := func(base float64) map[float64]float64 {
		return map[float64]float64{50: base, 90: base * 2, 99: base * 4, 99.9: base * 8}
	}
	for i, n := range []string{"direct", "nginx", "haproxy", "caddy", "remora-router"} {
		for r := 0; r < 2; r++ {
			res.http[n] = append(res.http[n], httpRun{run: r + 1, rps: float64(30000 - 5000*i + r*100), lat: lat(0.0002 * float64(i+1)),
				cpu1k: 0.05, cpuRes: 0.05, cpuMax: 0.04, rss: 10 << 20, hwm: 12 << 20, latQPS: 1000})
		}
	}
	res.unavailable["remora-full"] = "not available in this build: exited: exit status 2"
	res.server["opa run --server: REST"] = []loadResult{{ops: 1000, perSecond: 100, cpu: 1, pct: lat(0.001)}}
	res.server["remora mixer: ext_authz Check"] = []loadResult{{ops: 4000, perSecond: 400, cpu: 1, pct: lat(0.0003)}}
	res.server["remora mixer, no decision cache: ext_authz Check"] = []loadResult{{ops: 2000, perSecond: 200, cpu: 1, pct: lat(0.0005)}}
	return &env{o: o, res: res, peers: &peers{version: map[string]string{"nginx": "nginx version: nginx/1.22.1"},
		missing: map[string]string{}}, commands: map[string]string{"wrk nginx": "wrk -t 2"}, configs: map[string]string{}}
}

func TestCharts(t *testing.T) {
	e := testEnv(t)
	if err := e.charts(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"throughput.png", "latency.png", "server.png"} {
		f, err := os.Open(filepath.Join(e.o.img, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 300 {
			t.Fatalf("%s: %v is too small", name, b)
		}
	}
}

func TestMarkdown(t *testing.T) {
	e := testEnv(t)
	md := e.markdown()
	for _, want := range []string{
		"| nginx | 25050 | 25000–25100 | 1.00× | 1.25× | 1.66× | 0 |", // medians and ratios
		"| remora-full | not available in this build: exited: exit status 2 |",
		"| server Check ≥ 3 × decisions/s per core of `opa run --server` REST (opa-envoy-plugin not measured), remora ext_authz (decision cache on, the default) | 4.00× | met |",
		"| server Check ≥ 3 × decisions/s per core of `opa run --server` REST (opa-envoy-plugin not measured), remora ext_authz without the decision cache | 2.00× | **not met** |",
		"| remora mixer, no decision cache: ext_authz Check | 200 |",
		"| sidecar (check+report+log) throughput ≥ 0.8 × nginx | not measured | not measured |",
		"wrk -t 2",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

func TestOutageMarkdown(t *testing.T) {
	for _, c := range []struct {
		name string
		run  *outageRun
		want []string
	}{
		{"not run", nil, []string{"| 0 reports lost across a server restart or a 30 s outage (drops beyond the buffer counted) | not measured | not measured |"}},
		{"nothing lost", &outageRun{outage: 30500 * time.Millisecond, qps: 500, requests: 22500, delivered: 22400, dropped: 100, restarted: 20000, logLines: 22500},
			[]string{"| 22500 | 22400 | 100 | 0 | **0** | 0 | 22500 | 20000 |", "0 lost, 100 dropped and counted, of 22500 records across a 30.5s outage at 500 rps | met |"}},
		{"short outage", &outageRun{outage: 5 * time.Second, qps: 500, requests: 10, delivered: 10}, []string{"| met for a 5s outage (shorter than 30 s) |"}},
		{"records lost", &outageRun{outage: 31 * time.Second, qps: 500, requests: 100, delivered: 90, queued: 2}, []string{"| **8** |", "8 lost, 0 dropped and counted, of 100 records across a 31s outage at 500 rps | **not met** |"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := testEnv(t)
			e.res.outage = c.run
			md := e.markdown()
			for _, want := range c.want {
				if !strings.Contains(md, want) {
					t.Errorf("markdown lacks %q", want)
				}
			}
		})
	}
}
