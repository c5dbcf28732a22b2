package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// httpRun is one run of one proxy.
type httpRun struct {
	run       int // 1-based run number, to pair with the direct run
	rps       float64
	errors    int64
	cpuMax    float64 // CPU s per 1,000 requests under wrk (maximum rate)
	lat       map[float64]float64
	latQPS    float64
	latErrors int64
	cpu1k     float64 // CPU s per 1,000 requests at -qps
	cpuRes    float64 // CPU s per 1,000 requests at -resource-qps
	resQPS    float64
	rss, hwm  int64 // after the resource run
	helperRSS int64
	total     int64 // requests sent through the proxy, warm-up included

	cacheHits, cacheMisses float64 // the sidecar's check cache (remora-full)
}

type grpcRun struct {
	maxQPS    float64
	maxErrors int64
	lat       map[float64]float64
	latErrors int64
	h2RPS     float64
	h2Errors  int64
}

type results struct {
	started, finished time.Time
	http              map[string][]httpRun
	grpc              map[string][]grpcRun
	server            map[string][]loadResult
	outage            *outageRun
	goBench           map[string]goBenchResult // by benchmark name
	unavailable       map[string]string
	notes             [][2]string // scenario, caveat
	foreign           foreignCPU  // CPU other programs took while the harness measured
}

func newResults() *results {
	return &results{http: map[string][]httpRun{}, grpc: map[string][]grpcRun{},
		server: map[string][]loadResult{}, goBench: map[string]goBenchResult{}, unavailable: map[string]string{}}
}

// median of the values f picks from runs; negative values (not measured)
// are left out, and -1 is returned when nothing is left.
func median[T any](runs []T, f func(T) float64) float64 {
	var v []float64
	for _, r := range runs {
		if x := f(r); x >= 0 {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return -1
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// added is the latency a proxy adds at percentile q: for each run, the
// proxy's percentile minus the direct connection's percentile measured in
// the same run (moments apart), and the median of those differences. ok is
// false when no run has both.
func (res *results) added(name string, q float64) (v float64, ok bool) {
	direct := map[int]float64{}
	for _, d := range res.http["direct"] {
		if x, ok := d.lat[q]; ok {
			direct[d.run] = x
		}
	}
	var diffs []float64
	for _, r := range res.http[name] {
		x, ok1 := r.lat[q]
		d, ok2 := direct[r.run]
		if ok1 && ok2 {
			diffs = append(diffs, x-d)
		}
	}
	if len(diffs) == 0 {
		return 0, false
	}
	slices.Sort(diffs)
	if len(diffs)%2 == 1 {
		return diffs[len(diffs)/2], true
	}
	return (diffs[len(diffs)/2-1] + diffs[len(diffs)/2]) / 2, true
}

func spread[T any](runs []T, f func(T) float64) (lo, hi float64) {
	lo, hi = -1, -1
	for i, r := range runs {
		x := f(r)
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

func sum[T any](runs []T, f func(T) int64) int64 {
	var n int64
	for _, r := range runs {
		n += f(r)
	}
	return n
}

// machine describes the box the numbers come from.
func machine() [][2]string {
	var rows [][2]string
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(l[strings.IndexByte(l, ':')+1:])
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	osName := "unknown"
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				osName = strings.Trim(v, `"`)
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			mem = f[1] + " kB"
		}
	}
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	gover := runtime.Version()
	if b, err := exec.Command("go", "version").Output(); err == nil {
		gover = strings.TrimSpace(string(b))
	}
	rows = append(rows,
		[2]string{"CPUs (nproc)", fmt.Sprint(runtime.NumCPU())},
		[2]string{"CPU model", model},
		[2]string{"kernel", kernel},
		[2]string{"OS", osName},
		[2]string{"memory", mem},
		[2]string{"load average when the report was written", load},
		[2]string{"Go", gover},
	)
	return rows
}

func fnum(v float64, prec int) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func fms(s float64) string {
	if s < 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", s*1000)
}

// fmsSigned formats an added latency, which noise can make negative.
func fmsSigned(s float64) string { return fmt.Sprintf("%.3f", s*1000) }

func fratio(a, b float64) string {
	if a < 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func fmb(b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
