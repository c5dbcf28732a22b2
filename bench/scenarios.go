package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHeader is sent with every proxied request: the RBAC policy that the
// remora-full scenario's check filter asks about allows alice to GET /1k.
const userHeader = "x-user: alice"

// env is one harness run.
type env struct {
	o             options
	ps            *procs
	peers         *peers
	dir           string
	remora        string
	remoraVersion string
	sidecar       string // the binary of the remora proxies (the sidecar build)
	res           *results
	prog          *progress

	upstream   *proc
	upHTTP     string // HTTP/1.1 upstream address (nginx, static 1 KiB)
	upH2C      string // h2c upstream address (the same nginx)
	grpcServer *proc
	upGRPC     string // fortio's gRPC ping server

	commands map[string]string // scenario -> an exact command line
	configs  map[string]string // peer -> configuration text
}

// step is one unit of the plan, with its planned duration for the estimate.
type step struct {
	label   string
	planned time.Duration
	run     func(ctx context.Context) error
}

// proxyDef is one way of reaching the upstream.
type proxyDef struct {
	name  string
	desc  string
	needs []string // peers
	start func(ctx context.Context, e *env, listen string) (*running, error)
}

// running is a started proxy: main is measured; helpers (the mixer server
// of remora-full) are measured separately.
type running struct {
	main    *proc
	helpers []*proc
	metrics string       // the mixer server's /metrics URL (remora-full)
	stats   string       // the sidecar's Prometheus stats URL (remora-full)
	log     string       // the sidecar's access-log file (remora-full), "" without one
	mixer   *mixerServer // remora-full's mixer server
}

var proxies = []proxyDef{
	{name: "direct", desc: "no proxy: the client talks to the upstream"},
	{name: "nginx", desc: "nginx reverse proxy (proxy_pass, upstream keepalive)", needs: []string{"nginx"}, start: startNginx},
	{name: "haproxy", desc: "HAProxy, mode http, http-reuse always", needs: []string{"haproxy"}, start: startHAProxy},
	{name: "caddy", desc: "Caddy reverse_proxy", needs: []string{"caddy"}, start: startCaddy},
	{name: "remora-router", desc: "`remora proxy` quick mode: router only", start: startRemoraRouter},
	{name: "remora-full", desc: "`remora proxy` with mixer check (cache hits) + report + file access log (when the build has the file sink, see Checks and caveats), `remora mixer` beside it", start: startRemoraFull},
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// startUpstreams starts the fixed upstream (nginx with a static 1 KiB file,
// HTTP/1.1 and h2c) and fortio's gRPC ping server.
func (e *env) startUpstreams(ctx context.Context) error {
	body := make([]byte, 1024)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	if err := os.WriteFile(e.path("www/1k"), body, 0o644); err != nil {
		return err
	}
	if e.peers.has("nginx") {
		var err error
		if e.upHTTP, err = freePort(); err != nil {
			return err
		}
		if e.upH2C, err = freePort(); err != nil {
			return err
		}
		conf, text, err := writeConf(upstreamConf, e.dir, "upstream.conf", confData{HTTP: e.upHTTP, H2C: e.upH2C})
		if err != nil {
			return err
		}
		e.configs["upstream (nginx)"] = text
		argv := []string{e.peers.path["nginx"], "-p", e.dir, "-e", e.path("upstream-error.log"), "-c", conf}
		e.commands["upstream"] = shellJoin(argv)
		p, err := e.ps.start("upstream", e.path("upstream.log"), e.peers.env, argv...)
		if err != nil {
			return err
		}
		if err := waitReady(ctx, p, 10*time.Second, httpReady("http://"+e.upHTTP+"/1k", nil, 200)); err != nil {
			return fmt.Errorf("upstream nginx: %w", err)
		}
		e.upstream = p
	}
	if e.peers.has("fortio") {
		grpc, err := freePort()
		if err != nil {
			return err
		}
		httpAddr, err := freePort()
		if err != nil {
			return err
		}
		argv := []string{e.peers.path["fortio"], "server", "-grpc-port", grpc, "-http-port", httpAddr,
			"-redirect-port", "disabled", "-ui-path", "", "-loglevel", "Warning"}
		e.commands["grpc upstream"] = shellJoin(argv)
		p, err := e.ps.start("fortio-server", e.path("fortio-server.log"), nil, argv...)
		if err != nil {
			return err
		}
		if err := waitReady(ctx, p, 10*time.Second, tcpReady(grpc)); err != nil {
			return fmt.Errorf("fortio server: %w", err)
		}
		e.grpcServer, e.upGRPC = p, grpc
	}
	return nil
}

func (e *env) stopUpstreams() {
	for _, p := range []*proc{e.upstream, e.grpcServer} {
		if p != nil {
			p.stop(3 * time.Second)
		}
	}
}

// plan lists every step: runs are interleaved (run 1 of every scenario,
// then run 2 ...) so that a slow spell of the shared machine spreads over
// the scenarios instead of hitting one.
func (e *env) plan() []step {
	o := e.o
	var steps []step
	perProxy := o.warmup + o.duration + 2*o.latDur + 2*time.Second
	for r := 1; r <= o.runs; r++ {
		if o.section("http") {
			for _, pd := range proxies {
				steps = append(steps, step{
					label:   fmt.Sprintf("http %s (run %d/%d)", pd.name, r, o.runs),
					planned: perProxy,
					run:     func(ctx context.Context) error { return e.measureProxy(ctx, pd, r) },
				})
			}
		}
		if o.section("grpc") {
			for _, via := range []string{"direct", "remora"} {
				steps = append(steps, step{
					label:   fmt.Sprintf("grpc+h2 %s (run %d/%d)", via, r, o.runs),
					planned: 2*o.duration + o.latDur + time.Second,
					run:     func(ctx context.Context) error { return e.measureGRPC(ctx, via, r) },
				})
			}
		}
		if o.section("server") {
			steps = append(steps, step{
				label:   fmt.Sprintf("server remora mixer (run %d/%d)", r, o.runs),
				planned: 3*o.duration + 2*o.latDur + 2*time.Second,
				run:     func(ctx context.Context) error { return e.measureMixer(ctx, r) },
			}, step{
				label:   fmt.Sprintf("server remora mixer, no decision cache (run %d/%d)", r, o.runs),
				planned: 2*o.duration + 2*o.latDur + 2*time.Second,
				run:     func(ctx context.Context) error { return e.measureMixerNoCache(ctx, r) },
			}, step{
				label:   fmt.Sprintf("server opa-envoy-plugin (run %d/%d)", r, o.runs),
				planned: o.duration + o.latDur + 2*time.Second,
				run:     func(ctx context.Context) error { return e.measureOPAEnvoy(ctx, r) },
			}, step{
				label:   fmt.Sprintf("server opa run --server (run %d/%d)", r, o.runs),
				planned: o.duration + o.latDur + 2*time.Second,
				run:     func(ctx context.Context) error { return e.measureOPA(ctx, r) },
			})
		}
	}
	if o.section("go") {
		steps = append(steps, step{label: "in-process Go benchmarks with per-operation targets", planned: 30 * time.Second, run: e.measureGoBenches})
	}
	if o.section("outage") {
		steps = append(steps, step{
			label:   "report delivery across a mixer outage",
			planned: o.outageBefore + o.outage + o.outageAfter + 5*time.Second,
			run:     e.measureOutage,
		})
	}
	return steps
}

// note records, once, a caveat about how a scenario was measured.
func (e *env) note(name, text string) {
	for _, n := range e.res.notes {
		if n[0] == name && n[1] == text {
			return
		}
	}
	logf("%s: %s", name, text)
	e.res.notes = append(e.res.notes, [2]string{name, text})
}

// unavailable records why a scenario could not be measured; later runs of
// it are skipped.
func (e *env) unavailable(name, why string) {
	if _, ok := e.res.unavailable[name]; !ok {
		logf("%s: %s", name, why)
		e.res.unavailable[name] = why
	}
}

func (e *env) measureProxy(ctx context.Context, pd proxyDef, r int) error {
	if _, skip := e.res.unavailable[pd.name]; skip {
		return nil
	}
	for _, n := range append([]string{"nginx", "wrk", "fortio"}, pd.needs...) {
		if !e.peers.has(n) {
			e.unavailable(pd.name, n+" is not installed: "+e.peers.missing[n])
			return nil
		}
	}
	target := e.upHTTP
	var rp *running
	if pd.start != nil {
		listen, err := freePort()
		if err != nil {
			return err
		}
		rp, err = pd.start(ctx, e, listen)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.unavailable(pd.name, err.Error())
			return nil
		}
		defer rp.stop()
		err = waitReady(ctx, rp.main, 15*time.Second,
			httpReady("http://"+listen+"/1k", http.Header{"X-User": {"alice"}}, 200))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.unavailable(pd.name, notAvailable(pd.name, err))
			return nil
		}
		target = listen
	}
	url := "http://" + target + "/1k"
	m := httpRun{run: r}
	if rp != nil && rp.metrics != "" {
		// The check filter must be deciding: a user the policy does not
		// know is refused.
		if err := httpReady(url, http.Header{"X-User": {"mallory"}}, 403)(); err != nil {
			e.unavailable(pd.name, "the mixer check is not enforced: "+err.Error())
			return nil
		}
	}

	// Warm-up: connections, pools, caches (the check cache of remora-full),
	// at the latency run's rate. The fixed-rate runs come first and the
	// throughput run last, so that the resident memory read at the
	// resource rate is that rate's, not what a maximum-rate burst left
	// behind (VmHWM keeps the peak of the whole scenario).
	wu, err := e.fortio(ctx, pd.name+"-warmup", url, e.o.latQPS, e.o.latConns, e.o.warmup, false)
	if err != nil {
		return err
	}
	m.total = wu.count

	// Latency by Istio's method, and resources at that rate.
	u0 := rp.usage()
	f, err := e.fortio(ctx, pd.name+"-latency", url, e.o.latQPS, e.o.latConns, e.o.latDur, false)
	if err != nil {
		return err
	}
	u1 := rp.usage()
	m.lat, m.latQPS, m.latErrors = f.pct, f.qps, f.errors
	m.total += f.count
	m.cpu1k = cpuPer1k(u0, u1, f.count)

	// Resources at resource-qps.
	f2, err := e.fortio(ctx, pd.name+"-resources", url, e.o.resQPS, e.o.latConns, e.o.latDur, false)
	if err != nil {
		return err
	}
	u2 := rp.usage()
	m.cpuRes = cpuPer1k(u1, u2, f2.count)
	m.total += f2.count
	m.resQPS = f2.qps
	if u2 != nil {
		m.rss = u2.rss
	}

	// Throughput.
	w, err := e.wrk(ctx, pd.name, url, e.o.duration)
	if err != nil {
		return err
	}
	u3 := rp.usage()
	m.rps, m.errors = w.rps, w.errors
	m.total += w.requests
	m.cpuMax = cpuPer1k(u2, u3, w.requests)
	if u3 != nil {
		m.hwm = u3.hwm
	}
	if rp != nil {
		for _, h := range rp.helpers {
			if u, err := readUsage(h.pid()); err == nil {
				m.helperRSS = u.rss
			}
		}
	}
	if rp != nil && rp.metrics != "" {
		// The reports must have reached the server.
		n, err := scrapeCounter(rp.metrics, "istio_requests_total")
		if err != nil {
			e.note(pd.name, "could not read the mixer's istio_requests_total: "+err.Error())
		} else {
			e.note(pd.name, fmt.Sprintf("run %d: the mixer server counted %.0f requests in `istio_requests_total` from the sidecar's reports (the harness counted %d sent, warm-up included; fortio's per-connection warm-up requests and requests in flight when wrk stops are not in that count, and a last report batch may still be in flight)",
				r, n, m.total))
		}
	}
	if rp != nil && rp.log != "" {
		if b, err := os.ReadFile(rp.log); err == nil {
			e.note(pd.name, fmt.Sprintf("run %d: the access log had %d lines at the end of the run", r, bytes.Count(b, []byte("\n"))))
		}
		os.Remove(rp.log) // each run starts a new file
	}
	if rp != nil && rp.stats != "" {
		hits, err1 := scrapeCounter(rp.stats, "remora_mixer_client_check_cache_hits_total")
		misses, err2 := scrapeCounter(rp.stats, "remora_mixer_client_check_cache_misses_total")
		if err := errors.Join(err1, err2); err != nil || hits+misses == 0 {
			e.note(pd.name, fmt.Sprintf("could not read the check cache's counters (%v)", err))
		} else {
			m.cacheHits, m.cacheMisses = hits, misses
		}
	}
	e.res.http[pd.name] = append(e.res.http[pd.name], m)
	logf("%s: %.0f req/s; at %d qps p50 %s p99 %s p99.9 %s", pd.name, m.rps, e.o.latQPS,
		ms(m.lat[50]), ms(m.lat[99]), ms(m.lat[99.9]))
	return nil
}

// notAvailable words a remora start failure: a subcommand this build does
// not have is "not available in this build", anything else is the error.
func notAvailable(name string, err error) string {
	s := err.Error()
	if strings.HasPrefix(name, "remora") && (strings.Contains(s, "not available") ||
		strings.Contains(s, "flag provided but not defined") || strings.Contains(s, "unknown command") ||
		strings.Contains(s, "unknown filter") || strings.Contains(s, "unknown access log type")) {
		return "not available in this build: " + s
	}
	return s
}

func (r *running) usage() *usage {
	if r == nil {
		return nil
	}
	u, err := readUsage(r.main.pid())
	if err != nil {
		return nil
	}
	return &u
}

func (r *running) stop() {
	if r == nil {
		return
	}
	r.main.stop(3 * time.Second)
	for _, h := range r.helpers {
		h.stop(3 * time.Second)
	}
}

// cpuPer1k is CPU seconds per 1,000 requests between two readings.
func cpuPer1k(a, b *usage, requests int64) float64 {
	if a == nil || b == nil || requests <= 0 {
		return -1
	}
	return (b.cpu - a.cpu) / float64(requests) * 1000
}

func startNginx(ctx context.Context, e *env, listen string) (*running, error) {
	conf, text, err := writeConf(nginxConf, e.dir, "nginx-proxy.conf", confData{Listen: listen, Upstream: e.upHTTP, Workers: e.o.workers})
	if err != nil {
		return nil, err
	}
	e.configs["nginx"] = text
	argv := []string{e.peers.path["nginx"], "-p", e.dir, "-e", e.path("nginx-proxy-error.log"), "-c", conf}
	return e.startMain("nginx", argv, e.peers.env)
}

func startHAProxy(ctx context.Context, e *env, listen string) (*running, error) {
	conf, text, err := writeConf(haproxyConf, e.dir, "haproxy.cfg", confData{Listen: listen, Upstream: e.upHTTP, Workers: e.o.workers})
	if err != nil {
		return nil, err
	}
	e.configs["haproxy"] = text
	argv := []string{e.peers.path["haproxy"], "-db", "-f", conf}
	return e.startMain("haproxy", argv, e.peers.env)
}

func startCaddy(ctx context.Context, e *env, listen string) (*running, error) {
	conf, text, err := writeConf(caddyConf, e.dir, "Caddyfile", confData{Listen: listen, Upstream: e.upHTTP})
	if err != nil {
		return nil, err
	}
	e.configs["caddy"] = text
	argv := []string{e.peers.path["caddy"], "run", "--config", conf, "--adapter", "caddyfile"}
	return e.startMain("caddy", argv, []string{"GOMAXPROCS=" + strconv.Itoa(e.o.workers),
		"HOME=" + e.dir, "XDG_DATA_HOME=" + e.path("caddy-data"), "XDG_CONFIG_HOME=" + e.path("caddy-config")})
}

func startRemoraRouter(ctx context.Context, e *env, listen string) (*running, error) {
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	argv := []string{e.sidecar, "proxy", "--listen", listen, "--upstream", e.upHTTP, "--admin", admin}
	return e.startMain("remora-router", argv, []string{"GOMAXPROCS=" + strconv.Itoa(e.o.workers)})
}

func startRemoraFull(ctx context.Context, e *env, listen string) (*running, error) {
	mixer, err := e.startMixerServer(ctx, "remora-full-mixer", false)
	if err != nil {
		return nil, fmt.Errorf("remora mixer %s", notAvailable("remora", err))
	}
	admin, err := freePort()
	if err != nil {
		mixer.proc.stop(3 * time.Second)
		return nil, err
	}
	d := confData{Listen: listen, Upstream: e.upHTTP, Admin: admin, Mixer: mixer.grpc, AccessLog: e.path("remora-access.log")}
	conf, text, err := writeConf(remoraFullConf, e.dir, "remora-full.yaml", d)
	if err != nil {
		mixer.proc.stop(3 * time.Second)
		return nil, err
	}
	// A build without the file access-log sink runs remora-full without
	// it, and the report says so.
	if out, err := exec.CommandContext(ctx, e.sidecar, "validate", "--config", conf).CombinedOutput(); err != nil &&
		strings.Contains(string(out), `unknown access log type "file"`) {
		e.note("remora-full", "ran **without the file access log**: this build has no `file` access-log sink ("+
			strings.TrimSpace(lastLines(string(out), 1))+")")
		d.AccessLog = ""
		if conf, text, err = writeConf(remoraFullConf, e.dir, "remora-full.yaml", d); err != nil {
			mixer.proc.stop(3 * time.Second)
			return nil, err
		}
	}
	e.configs["remora-full"] = text
	argv := []string{e.sidecar, "proxy", "--config", conf}
	r, err := e.startMain("remora-full", argv, []string{"GOMAXPROCS=" + strconv.Itoa(e.o.workers)})
	if err != nil {
		mixer.proc.stop(3 * time.Second)
		return nil, err
	}
	r.helpers = append(r.helpers, mixer.proc)
	r.mixer = mixer
	r.metrics = "http://" + mixer.mon + "/metrics"
	r.stats = "http://" + admin + "/stats/prometheus"
	r.log = d.AccessLog
	return r, nil
}

func (e *env) startMain(name string, argv, env []string) (*running, error) {
	e.commands[name] = envPrefix(env) + shellJoin(argv)
	p, err := e.ps.start(name, e.path(name+".log"), env, argv...)
	if err != nil {
		return nil, err
	}
	return &running{main: p}, nil
}

// mixerServer is a started `remora mixer`.
type mixerServer struct {
	proc *proc
	grpc string
	mon  string
}

// startMixerServer starts `remora mixer` with the benchmark's RBAC policy
// and waits until /readyz answers 200. noCache turns the server's decision
// cache off (policy.decision_cache.disabled), so that every Check
// evaluates the policy.
func (e *env) startMixerServer(ctx context.Context, name string, noCache bool) (*mixerServer, error) {
	grpcAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	mon, err := freePort()
	if err != nil {
		return nil, err
	}
	return e.startMixerServerAt(ctx, name, grpcAddr, mon, noCache)
}

// startMixerServerAt is startMixerServer on given gRPC and monitoring
// addresses (a restart on the same ports).
func (e *env) startMixerServerAt(ctx context.Context, name, grpcAddr, mon string, noCache bool) (*mixerServer, error) {
	policy, err := filepath.Abs("testdata/policy")
	if err != nil {
		return nil, err
	}
	argv := []string{e.remora, "mixer", "--policy", policy, "--grpc-addr", grpcAddr, "--monitoring-addr", mon, "--log-level", "warn"}
	cmdName := "remora mixer"
	if noCache {
		conf := filepath.Join(e.dir, "remora-mixer-no-cache.yaml")
		text := "# remora mixer without its server-side decision cache\npolicy:\n  decision_cache:\n    disabled: true\n"
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("bench: config %s: %w", conf, err)
		}
		e.configs["remora-mixer-no-cache"] = text
		argv = append(argv, "--config", conf)
		cmdName = "remora mixer (no decision cache)"
	}
	env := []string{"GOMAXPROCS=" + strconv.Itoa(e.o.workers)}
	e.commands[cmdName] = envPrefix(env) + shellJoin(argv)
	p, err := e.ps.start(name, e.path(name+".log"), env, argv...)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, p, 15*time.Second, httpReady("http://"+mon+"/readyz", nil, 200)); err != nil {
		p.stop(3 * time.Second)
		return nil, err
	}
	return &mixerServer{proc: p, grpc: grpcAddr, mon: mon}, nil
}

// wrkResult is one wrk run.
type wrkResult struct {
	rps      float64
	requests int64
	errors   int64
}

func (e *env) wrk(ctx context.Context, name, url string, d time.Duration) (wrkResult, error) {
	argv := []string{e.peers.path["wrk"], "-t", strconv.Itoa(e.o.threads), "-c", strconv.Itoa(e.o.conns),
		"-d", secs(d), "-H", userHeader, url}
	if !strings.HasSuffix(name, "-warmup") {
		e.commands["wrk "+name] = shellJoin(argv)
	}
	out, err := e.runTool(ctx, "wrk-"+name, e.peers.env, argv)
	if err != nil {
		return wrkResult{}, err
	}
	return parseWrk(out)
}

// runTool runs a load generator to its end.
func (e *env) runTool(ctx context.Context, name string, env, argv []string) (string, error) {
	log := e.path(name + ".out")
	p, err := e.ps.start(name, log, env, argv...)
	if err != nil {
		return "", err
	}
	err = p.wait(ctx)
	out, _ := os.ReadFile(log)
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", name, err, lastLines(string(out), 3))
	}
	return string(out), nil
}

// fortioResult is one fortio load run.
type fortioResult struct {
	qps    float64
	count  int64
	errors int64
	pct    map[float64]float64 // percentile -> seconds
}

var percentiles = []float64{50, 90, 99, 99.9}

func (e *env) fortio(ctx context.Context, name, url string, qps, conns int, d time.Duration, grpc bool) (fortioResult, error) {
	jsonPath := e.path("fortio-" + name + ".json")
	argv := []string{e.peers.path["fortio"], "load", "-qps", strconv.Itoa(qps), "-c", strconv.Itoa(conns),
		"-t", secs(d), "-r", strconv.FormatFloat(e.o.resolution, 'g', -1, 64), "-p", "50,90,99,99.9",
		"-json", jsonPath, "-loglevel", "Warning"}
	if grpc {
		argv = append(argv, "-grpc", "-ping")
	} else {
		argv = append(argv, "-H", userHeader)
	}
	argv = append(argv, url)
	e.commands["fortio "+name] = shellJoin(argv)
	if _, err := e.runTool(ctx, "fortio-"+name, nil, argv); err != nil {
		return fortioResult{}, err
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return fortioResult{}, err
	}
	return parseFortio(b, grpc)
}

// measureGRPC runs fortio's gRPC ping (maximum rate, then Istio's fixed
// rate) and h2load (HTTP/2 prior knowledge, 1 KiB) directly or through
// `remora proxy` quick mode, whose cluster speaks the downstream protocol.
func (e *env) measureGRPC(ctx context.Context, via string, r int) error {
	name := "grpc-" + via
	if _, skip := e.res.unavailable[name]; skip {
		return nil
	}
	if !e.peers.has("fortio") {
		e.unavailable(name, "fortio is not installed: "+e.peers.missing["fortio"])
		return nil
	}
	var m grpcRun
	grpcTarget, h2Target := e.upGRPC, e.upH2C
	if via == "remora" {
		var rps []*running
		defer func() {
			for _, p := range rps {
				p.stop()
			}
		}()
		for _, t := range []struct{ name, up string }{{"remora-grpc", e.upGRPC}, {"remora-h2", e.upH2C}} {
			if t.up == "" {
				continue
			}
			listen, err := freePort()
			if err != nil {
				return err
			}
			admin, err := freePort()
			if err != nil {
				return err
			}
			argv := []string{e.sidecar, "proxy", "--listen", listen, "--upstream", t.up, "--admin", admin}
			rp, err := e.startMain(t.name, argv, []string{"GOMAXPROCS=" + strconv.Itoa(e.o.workers)})
			if err != nil {
				return err
			}
			rps = append(rps, rp)
			if err := waitReady(ctx, rp.main, 15*time.Second, tcpReady(listen)); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				e.unavailable(name, notAvailable("remora", err))
				return nil
			}
			if t.name == "remora-grpc" {
				grpcTarget = listen
			} else {
				h2Target = listen
			}
		}
	}
	f, err := e.fortio(ctx, name+"-max", grpcTarget, 0, e.o.latConns, e.o.duration, true)
	if err != nil {
		e.unavailable(name, err.Error())
		return nil
	}
	m.maxQPS, m.maxErrors = f.qps, f.errors
	f, err = e.fortio(ctx, name+"-latency", grpcTarget, e.o.latQPS, e.o.latConns, e.o.latDur, true)
	if err != nil {
		e.unavailable(name, err.Error())
		return nil
	}
	m.lat, m.latErrors = f.pct, f.errors
	m.h2RPS = -1
	if e.peers.has("h2load") && h2Target != "" {
		argv := []string{e.peers.path["h2load"], "-c", strconv.Itoa(e.o.latConns), "-m", "10", "-t", "1",
			"-D", strconv.Itoa(int(e.o.duration / time.Second)), "-H", userHeader, "http://" + h2Target + "/1k"}
		e.commands["h2load "+via] = shellJoin(argv)
		out, err := e.runTool(ctx, "h2load-"+via, e.peers.env, argv)
		if err != nil {
			return err
		}
		h, err := parseH2load(out)
		if err != nil {
			return err
		}
		m.h2RPS, m.h2Errors = h.rps, h.errors
	}
	e.res.grpc[via] = append(e.res.grpc[via], m)
	logf("%s: grpc ping %.0f/s, at %d qps p99 %s; h2load %.0f req/s", name, m.maxQPS, e.o.latQPS, ms(m.lat[99]), m.h2RPS)
	return nil
}

// scrapeCounter sums every sample of a counter in a Prometheus text
// exposition.
func scrapeCounter(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: bad sample %q", name, line)
		}
		total += v
	}
	return total, nil
}

// parseWrk reads wrk's summary.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	found := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: bad Requests/sec %q", f[1])
			}
			r.rps, found = v, true
		case len(f) >= 5 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: bad request count %q", f[0])
			}
			r.requests = n
		case strings.HasPrefix(line, "  Non-2xx or 3xx responses:") && len(f) == 5:
			n, _ := strconv.ParseInt(f[4], 10, 64)
			r.errors += n
		case strings.HasPrefix(line, "  Socket errors:"):
			// "Socket errors: connect 0, read 1, write 0, timeout 0"
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				r.errors += n
			}
		}
	}
	if !found {
		return r, fmt.Errorf("wrk: no Requests/sec in its output: %s", lastLines(out, 3))
	}
	return r, nil
}

// parseFortio reads fortio's JSON result.
func parseFortio(b []byte, grpc bool) (fortioResult, error) {
	var j struct {
		ActualQPS         float64
		DurationHistogram struct {
			Count       int64
			Percentiles []struct {
				Percentile float64
				Value      float64
			}
		}
		RetCodes map[string]int64
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return fortioResult{}, fmt.Errorf("fortio: result: %w", err)
	}
	r := fortioResult{qps: j.ActualQPS, count: j.DurationHistogram.Count, pct: map[float64]float64{}}
	for _, p := range j.DurationHistogram.Percentiles {
		r.pct[p.Percentile] = p.Value
	}
	ok := "200"
	if grpc {
		ok = "SERVING"
	}
	for code, n := range j.RetCodes {
		if code != ok {
			r.errors += n
		}
	}
	if r.count == 0 {
		return r, fmt.Errorf("fortio: no requests completed")
	}
	return r, nil
}

type h2loadResult struct {
	rps    float64
	errors int64
}

// parseH2load reads h2load's summary: "finished in 2.00s, 12345.50 req/s,
// ..." and "requests: N total, N started, N done, N succeeded, N failed, N
// errored, N timeout".
func parseH2load(out string) (h2loadResult, error) {
	var r h2loadResult
	found := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(strings.ReplaceAll(line, ",", ""))
		switch {
		case len(f) >= 5 && f[0] == "finished" && f[4] == "req/s":
			v, err := strconv.ParseFloat(f[3], 64)
			if err != nil {
				return r, fmt.Errorf("h2load: bad req/s %q", f[3])
			}
			r.rps, found = v, true
		case len(f) >= 13 && f[0] == "requests:":
			failed, _ := strconv.ParseInt(f[9], 10, 64)
			errored, _ := strconv.ParseInt(f[11], 10, 64)
			r.errors = failed + errored
		case len(f) >= 5 && f[0] == "status" && f[1] == "codes:":
			// "status codes: N 2xx, N 3xx, N 4xx, N 5xx"
			for i := 2; i+1 < len(f); i += 2 {
				if f[i+1] == "4xx" || f[i+1] == "5xx" {
					n, _ := strconv.ParseInt(f[i], 10, 64)
					r.errors += n
				}
			}
		}
	}
	if !found {
		return r, fmt.Errorf("h2load: no req/s in its output: %s", lastLines(out, 3))
	}
	return r, nil
}

func secs(d time.Duration) string { return strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "s" }

func ms(s float64) string { return strconv.FormatFloat(s*1000, 'f', 3, 64) + "ms" }

// shellJoin quotes argv for a shell.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\"'$&|;<>*?()[]{}\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func envPrefix(env []string) string {
	var b strings.Builder
	for _, v := range env {
		if strings.HasPrefix(v, "GOMAXPROCS=") {
			b.WriteString(v + " ")
		}
	}
	return b.String()
}
