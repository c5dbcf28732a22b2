package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    wrkResult
		wantErr bool
	}{
		{name: "clean", out: `Running 2s test @ http://127.0.0.1:39491/1k
  2 threads and 64 connections
  52852 requests in 2.01s, 63.31MB read
Requests/sec:  26303.03
Transfer/sec:     31.51MB
`, want: wrkResult{rps: 26303.03, requests: 52852}},
		{name: "errors", out: `  1000 requests in 1.00s, 1.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:   1000.00
`, want: wrkResult{rps: 1000, requests: 1000, errors: 13}},
		{name: "no summary", out: "unable to connect to 127.0.0.1:1 Connection refused\n", wantErr: true},
		{name: "bad number", out: "Requests/sec:  x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseH2load(t *testing.T) {
	out := `finished in 2.01s, 16390.00 req/s, 17.85MB/s
requests: 32780 total, 32940 started, 32780 done, 32770 succeeded, 4 failed, 6 errored, 0 timeout
status codes: 32770 2xx, 0 3xx, 2 4xx, 1 5xx
`
	got, err := parseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := (h2loadResult{rps: 16390, errors: 13}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := parseH2load("h2load: connect refused\n"); err == nil {
		t.Fatal("no error for output without a summary")
	}
}

func TestParseFortio(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		grpc    bool
		errors  int64
		p99     float64
		wantErr bool
	}{
		{name: "http", json: `{"ActualQPS": 999.5, "DurationHistogram": {"Count": 2000,
			"Percentiles": [{"Percentile": 50, "Value": 0.0003}, {"Percentile": 99, "Value": 0.0012}]},
			"RetCodes": {"200": 1990, "503": 10}}`, errors: 10, p99: 0.0012},
		{name: "grpc", grpc: true, json: `{"ActualQPS": 10, "DurationHistogram": {"Count": 20,
			"Percentiles": [{"Percentile": 99, "Value": 0.002}]}, "RetCodes": {"SERVING": 20}}`, p99: 0.002},
		{name: "nothing completed", json: `{"DurationHistogram": {"Count": 0}}`, wantErr: true},
		{name: "not json", json: `Aborting because of error`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFortio([]byte(tt.json), tt.grpc)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if got.errors != tt.errors || got.pct[99] != tt.p99 {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	id := func(v float64) float64 { return v }
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{-1, 5}, 5}, // not measured is left out
		{[]float64{-1}, -1},
		{nil, -1},
	}
	for _, tt := range tests {
		if got := median(tt.in, id); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if o.runs != 1 || o.duration != 2*time.Second {
		t.Fatalf("quick defaults: runs %d duration %s", o.runs, o.duration)
	}
	o, err = parseOptions([]string{"-quick", "-runs", "2"})
	if err != nil || o.runs != 2 {
		t.Fatalf("an explicit -runs must win over -quick: %d, %v", o.runs, err)
	}
	for _, args := range [][]string{{"-runs", "0"}, {"-duration", "10ms"}, {"-only", "http,bogus"}, {"-qps", "-1"}} {
		if _, err := parseOptions(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"wrk", "-H", "x-user: alice", "-ui-path", "", "it's"})
	want := `wrk -H 'x-user: alice' -ui-path '' 'it'\''s'`
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestAdded(t *testing.T) {
	res := newResults()
	lat := func(v float64) map[float64]float64 { return map[float64]float64{99: v} }
	res.http["direct"] = []httpRun{{run: 1, lat: lat(1)}, {run: 2, lat: lat(100)}, {run: 3, lat: lat(2)}}
	// run 2 is noisy for everyone; pairing by run keeps it out of the others.
	res.http["p"] = []httpRun{{run: 1, lat: lat(1.5)}, {run: 2, lat: lat(90)}, {run: 3, lat: lat(2.25)}}
	// q was not measured in run 1: only runs 2 and 3 pair.
	res.http["q"] = []httpRun{{run: 2, lat: lat(101)}, {run: 3, lat: lat(5)}}
	tests := []struct {
		name string
		want float64
		ok   bool
	}{
		{"p", 0.25, true}, // differences 0.5, -10, 0.25
		{"q", 2, true},    // differences 1, 3
		{"none", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := res.added(tt.name, 99)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("added = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkCheckCacheHit-2   	  974683	      1451 ns/op	       0 B/op	       0 allocs/op
BenchmarkCheckCacheHitOther-2   	  1	      1 ns/op	       0 B/op	       0 allocs/op
BenchmarkCheckCacheHit-2   	 1573639	       806.3 ns/op	       16 B/op	       1 allocs/op
PASS`
	ns, allocs, err := parseGoBench(out, "BenchmarkCheckCacheHit")
	if err != nil || len(ns) != 2 || ns[0] != 1451 || ns[1] != 806.3 || allocs[1] != 1 {
		t.Fatalf("got %v %v %v", ns, allocs, err)
	}
	for _, bad := range []string{"PASS", "BenchmarkCheckCacheHit-2 10 100 ns/op"} {
		if _, _, err := parseGoBench(bad, "BenchmarkCheckCacheHit"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestGoBenchTargets(t *testing.T) {
	e := testEnv(t)
	if md := e.markdown(); !strings.Contains(md, "| check-cache hit ≤ 1 µs, 0 allocs | not measured | not measured |") {
		t.Error("unmeasured target not shown as such")
	}
	e.res.goBench["BenchmarkCheckCacheHit"] = goBenchResult{nsPerOp: 800, allocsPerOp: 0, runs: 5, command: "go test x"}
	if md := e.markdown(); !strings.Contains(md, "| check-cache hit ≤ 1 µs, 0 allocs | 800 ns/op, 0 allocs/op (in-process `go test x`, median of 5, on the same machine) | met |") {
		t.Error("met target not shown")
	}
	e.res.goBench["BenchmarkCheckCacheHit"] = goBenchResult{nsPerOp: 800, allocsPerOp: 1, runs: 5, command: "go test x"}
	if md := e.markdown(); !strings.Contains(md, "| **not met** |") {
		t.Error("an allocation does not fail the target")
	}
}

func TestForeignCPU(t *testing.T) {
	before := cpuAccount{machine: 100, steal: 1, own: 40}
	cases := []struct {
		name  string
		after cpuAccount
		wall  time.Duration
		want  string
	}{
		{"quiet", cpuAccount{machine: 160.2, steal: 1, own: 100}, 100 * time.Second, "The machine was otherwise quiet: programs other than the harness and the processes it started used 0.2 CPU seconds while it measured (0.2 % of one core; /proc/stat's busy time minus the harness's own)."},
		{"busy", cpuAccount{machine: 260, steal: 31, own: 100}, 100 * time.Second, "Other work shared the machine: programs other than the harness and the processes it started used 100 CPU seconds while it measured, 1.00 cores on average, so the figures are lower and noisier than on a quiet machine. The hypervisor took 30 CPU seconds (steal time) for other guests."},
		{"tick rounding", cpuAccount{machine: 159.99, steal: 1, own: 100}, 10 * time.Second, "The machine was otherwise quiet: programs other than the harness and the processes it started used 0.0 CPU seconds while it measured (0.0 % of one core; /proc/stat's busy time minus the harness's own)."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := foreignText(tc.after.since(before, tc.wall)); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	if got := foreignText(foreignCPU{}); !strings.Contains(got, "not measured") {
		t.Errorf("unmeasured run: %s", got)
	}
	a, err := readCPUAccount()
	if err != nil {
		t.Fatal(err)
	}
	if a.machine <= 0 || a.own <= 0 {
		t.Errorf("readCPUAccount = %+v, want positive busy and own CPU", a)
	}
}
