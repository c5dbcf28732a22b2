// Command remora-bench is Remora's whole-process benchmark harness. It
// installs its peers (nginx, HAProxy, wrk, h2load from Debian; fortio, Caddy
// and OPA from the Go module proxy) into a cache directory, starts each
// proxy or server on free loopback ports, drives it with wrk, fortio, h2load
// and an in-process gRPC/HTTP load generator, and writes the medians of
// several runs as Markdown and PNG charts (docs/benchmarks.md, docs/img/).
//
// Every process it starts runs in its own process group and is on a cleanup
// list that is emptied when the harness ends, fails or is interrupted.
//
// Usage (from the repository's top directory, see docs/benchmarks.md):
//
//	make bench                      # full run: build remora, run the harness
//	make bench BENCHFLAGS=-quick    # smoke run, a few seconds per scenario
//	cd bench && go run . -help
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	quick      bool
	runs       int
	duration   time.Duration // wrk and h2load duration, server load duration
	latDur     time.Duration // fortio duration
	warmup     time.Duration
	conns      int // wrk connections
	threads    int // wrk threads
	latQPS     int
	latConns   int
	resQPS     int
	workers    int // worker processes/threads of every proxy
	srvConns   int // concurrent callers of the server benchmarks
	srvQPS     int // fixed rate of the server latency measurement
	batch      int // records per Report batch
	cache      string
	remora     string
	sidecar    string
	repo       string
	out        string
	img        string
	only       string
	opaEnvoy   string
	resolution float64

	outage, outageBefore, outageAfter time.Duration
	outageQPS                         int
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("remora-bench", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 1 run, about 2 s per measurement (unless set explicitly below)")
	fs.IntVar(&o.runs, "runs", 3, "runs of every scenario; results are medians")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "duration of each throughput measurement (wrk, h2load, fortio max-rate, server load)")
	fs.DurationVar(&o.latDur, "latency-duration", 10*time.Second, "duration of each fixed-rate fortio measurement")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each proxy's measurements")
	fs.IntVar(&o.conns, "connections", 64, "wrk connections")
	fs.IntVar(&o.threads, "threads", 2, "wrk threads")
	fs.IntVar(&o.latQPS, "qps", 1000, "fortio request rate for the latency measurement (Istio's method: 1000)")
	fs.IntVar(&o.latConns, "latency-connections", 16, "fortio connections (Istio's method: 16)")
	fs.IntVar(&o.resQPS, "resource-qps", 2000, "fortio request rate for the resource measurement")
	fs.IntVar(&o.workers, "workers", runtime.NumCPU(), "worker processes/threads (GOMAXPROCS for Go peers) of every proxy")
	fs.IntVar(&o.srvConns, "server-connections", 16, "concurrent callers in the server benchmarks")
	fs.IntVar(&o.srvQPS, "server-qps", 1000, "fixed rate of the server Check latency measurement (decisions/s, open loop, -latency-duration long)")
	fs.IntVar(&o.batch, "report-batch", 100, "records per Report batch (Istio's default max_batch_entries)")
	fs.StringVar(&o.cache, "cache", ".cache", "directory for installed peers and run files")
	fs.StringVar(&o.remora, "remora", "", "remora binary (default: make build into the cache)")
	fs.StringVar(&o.sidecar, "remora-sidecar", "", "binary the remora proxies run (default: the sidecar build, make build-sidecar, into the cache); the mixer always runs -remora")
	fs.StringVar(&o.repo, "repo", "..", "the Remora repository (built when -remora is empty)")
	fs.StringVar(&o.out, "out", "../docs/benchmarks.md", "Markdown results file (empty: print to stdout only)")
	fs.StringVar(&o.img, "img", "../docs/img", "directory for the PNG charts")
	fs.StringVar(&o.opaEnvoy, "opa-envoy", "", "opa-envoy-plugin binary (default: .cache/bin/opa-envoy-plugin when present; not installed by the harness)")
	fs.StringVar(&o.only, "only", "", "comma-separated sections to run: http,grpc,server,go,outage (default all)")
	fs.DurationVar(&o.outage, "outage", 30*time.Second, "how long the mixer server stays down in the outage section")
	fs.DurationVar(&o.outageBefore, "outage-before", 5*time.Second, "load before the mixer server is killed")
	fs.DurationVar(&o.outageAfter, "outage-after", 10*time.Second, "load after the mixer server is back")
	fs.IntVar(&o.outageQPS, "outage-qps", 500, "request rate during the outage section")
	fs.Float64Var(&o.resolution, "resolution", 0.00001, "fortio histogram resolution in seconds (-r)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["runs"] {
			o.runs = 1
		}
		if !set["duration"] {
			o.duration = 2 * time.Second
		}
		if !set["latency-duration"] {
			o.latDur = 2 * time.Second
		}
		if !set["warmup"] {
			o.warmup = 500 * time.Millisecond
		}
		if !set["outage"] {
			o.outage = 5 * time.Second
		}
		if !set["outage-before"] {
			o.outageBefore = 2 * time.Second
		}
		if !set["outage-after"] {
			o.outageAfter = 2 * time.Second
		}
	}
	var bad []error
	if o.runs < 1 {
		bad = append(bad, fmt.Errorf("-runs: must be at least 1, not %d", o.runs))
	}
	for name, d := range map[string]time.Duration{"duration": o.duration, "latency-duration": o.latDur} {
		if d < time.Second {
			bad = append(bad, fmt.Errorf("-%s: must be at least 1s, not %s", name, d))
		}
	}
	for name, n := range map[string]int{"connections": o.conns, "threads": o.threads, "qps": o.latQPS,
		"latency-connections": o.latConns, "resource-qps": o.resQPS, "workers": o.workers,
		"server-connections": o.srvConns, "server-qps": o.srvQPS, "report-batch": o.batch, "outage-qps": o.outageQPS} {
		if n < 1 {
			bad = append(bad, fmt.Errorf("-%s: must be at least 1, not %d", name, n))
		}
	}
	for _, s := range splitList(o.only) {
		if s != "http" && s != "grpc" && s != "server" && s != "go" && s != "outage" {
			bad = append(bad, fmt.Errorf("-only: unknown section %q (http, grpc, server, go, outage)", s))
		}
	}
	return o, errors.Join(bad...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (o options) section(name string) bool {
	l := splitList(o.only)
	if len(l) == 0 {
		return true
	}
	for _, s := range l {
		if s == name {
			return true
		}
	}
	return false
}

// neededPeers lists the peers the selected sections use.
func (o options) neededPeers() map[string]bool {
	need := map[string]bool{}
	add := func(names ...string) {
		for _, n := range names {
			need[n] = true
		}
	}
	if o.section("http") {
		add("nginx", "wrk", "fortio", "haproxy", "caddy")
	}
	if o.section("grpc") {
		add("nginx", "fortio", "h2load")
	}
	if o.section("server") {
		add("opa")
	}
	if o.section("outage") {
		add("nginx", "fortio")
	}
	return need
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "remora-bench: %v\n", err)
		os.Exit(2)
	}
	ps := newProcs()
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nremora-bench: %v: stopping every process it started\n", s)
		cancel()
		ps.stopAll()
		s = <-sigs
		fmt.Fprintf(os.Stderr, "remora-bench: %v again: exiting\n", s)
		os.Exit(130)
	}()
	code := 0
	if err := run(ctx, o, ps); err != nil {
		fmt.Fprintf(os.Stderr, "remora-bench: %v\n", err)
		code = 1
		if ctx.Err() != nil {
			code = 130
		}
	}
	ps.stopAll()
	cancel()
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "remora-bench: "+format+"\n", args...)
}

func run(ctx context.Context, o options, ps *procs) error {
	cache, err := filepath.Abs(o.cache)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	started := time.Now()
	pr := installPeers(ctx, cache, o.neededPeers(), logf)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	remora, remoraVersion, err := buildRemora(ctx, o, cache)
	if err != nil {
		return err
	}
	sidecar, err := buildSidecar(ctx, o, cache)
	if err != nil {
		return err
	}
	dir := filepath.Join(cache, "run")
	os.RemoveAll(dir)
	for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "www")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	e := &env{o: o, ps: ps, peers: pr, dir: dir, remora: remora, sidecar: sidecar, remoraVersion: remoraVersion,
		res: newResults(), commands: map[string]string{}, configs: map[string]string{}}
	e.res.started = started
	cpu0, cpuErr := readCPUAccount()
	measuring := time.Now()
	if err := e.startUpstreams(ctx); err != nil {
		return err
	}
	steps := e.plan()
	e.prog = &progress{start: time.Now(), steps: steps}
	for i := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.prog.begin(i)
		if err := steps[i].run(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		e.prog.end(i)
	}
	e.res.finished = time.Now()
	e.stopUpstreams()
	if cpu1, err := readCPUAccount(); err == nil && cpuErr == nil {
		e.res.foreign = cpu1.since(cpu0, time.Since(measuring))
	}
	md := e.markdown()
	if o.out == "" {
		fmt.Print(md)
		return nil
	}
	if err := os.MkdirAll(o.img, 0o755); err != nil {
		return err
	}
	if err := e.charts(); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	// The verdicts, for the terminal.
	if i := strings.Index(md, "## Against the targets"); i >= 0 {
		t := md[i:]
		if j := strings.Index(t[3:], "\n## "); j >= 0 {
			t = t[:j+3]
		}
		fmt.Println(strings.TrimSpace(t))
	}
	logf("wrote %s and charts in %s (%s in all)", o.out, o.img, time.Since(started).Round(time.Second))
	return nil
}

// buildSidecar returns the binary the remora proxies run: -remora-sidecar,
// else the sidecar build of the repository (the proxy without the mixer
// and OPA, as a sidecar container runs it).
func buildSidecar(ctx context.Context, o options, cache string) (string, error) {
	exe := o.sidecar
	if exe == "" {
		exe = filepath.Join(cache, "remora-sidecar")
		if err := makeTarget(ctx, o.repo, cache, "build-sidecar"); err != nil {
			return "", err
		}
	}
	return filepath.Abs(exe)
}

// makeTarget builds a binary of the repository into dir with its Makefile,
// so that the harness measures what `make build` ships (tags, flags).
func makeTarget(ctx context.Context, repo, dir, target string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	logf("make %s in %s", target, repo)
	c := exec.CommandContext(ctx, "make", "-s", target, "BIN="+dir)
	c.Dir = repo
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("make %s: %w: %s", target, err, out)
	}
	return nil
}

// buildRemora returns the remora binary to measure and its version line.
func buildRemora(ctx context.Context, o options, cache string) (string, string, error) {
	exe := o.remora
	if exe == "" {
		exe = filepath.Join(cache, "remora")
		if err := makeTarget(ctx, o.repo, cache, "build"); err != nil {
			return "", "", err
		}
	}
	exe, err := filepath.Abs(exe)
	if err != nil {
		return "", "", err
	}
	out, err := exec.CommandContext(ctx, exe, "version").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("remora version: %w: %s", err, out)
	}
	v := strings.TrimSpace(string(out))
	if c := exec.CommandContext(ctx, "git", "-C", o.repo, "log", "-1", "--format=%h %s"); c != nil {
		if b, err := c.Output(); err == nil {
			v += " (commit " + strings.TrimSpace(string(b)) + ")"
		}
	}
	return exe, v, nil
}

// progress prints which step runs and an estimate of the time left, scaled
// by how long the finished steps took against their plan.
type progress struct {
	start       time.Time
	steps       []step
	planDone    time.Duration
	stepStarted time.Time
}

func (p *progress) begin(i int) {
	p.stepStarted = time.Now()
	var left time.Duration
	for _, s := range p.steps[i:] {
		left += s.planned
	}
	if p.planDone > 0 {
		left = time.Duration(float64(left) * float64(time.Since(p.start)) / float64(p.planDone))
	}
	fmt.Fprintf(os.Stderr, "[%2d/%d] %-40s elapsed %-7s about %s left\n", i+1, len(p.steps), p.steps[i].label,
		time.Since(p.start).Round(time.Second), left.Round(time.Second))
}

func (p *progress) end(i int) { p.planDone += p.steps[i].planned }
