package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// markdown renders docs/benchmarks.md: how to run the harness, the
// conditions, the medians, the targets and what could not be measured.
func (e *env) markdown() string {
	o, res := e.o, e.res
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	p("# Benchmarks\n\n")
	p("Whole-process benchmarks of `remora proxy` and `remora mixer` against nginx, HAProxy, Caddy and\n")
	p("OPA, measured side by side in one run on one machine by the harness in [`bench/`](../bench).\n")
	p("This file and the charts in `docs/img/` are written by the harness; do not edit them by hand.\n")
	p("The in-process Go benchmarks of the hot paths are `make bench-go`.\n\n")
	p("## Running it\n\n")
	p("```\nmake bench                                  # build remora, install the peers, run everything (3 runs)\n")
	p("make bench BENCHFLAGS=-quick                # smoke run: 1 run, 2 s per measurement\n")
	p("make bench BENCHFLAGS='-runs 5 -only http'  # more runs, HTTP proxies only\n")
	p("cd bench && go run . -help                  # every flag\n```\n\n")
	p("The harness installs its peers into `bench/.cache` (git-ignored) the first time: nginx, HAProxy,\n")
	p("wrk and h2load are downloaded with `apt-get download` and unpacked with `dpkg -x` (with the\n")
	p("shared libraries the machine lacks), so nothing is installed system-wide and no service starts;\n")
	p("fortio, OPA and Caddy are built with `go install` at pinned versions. Every peer runs on a free\n")
	p("loopback port chosen at run time, in its own process group, and is stopped when its scenario\n")
	p("ends, when the harness fails, or on SIGINT/SIGTERM (a second signal exits at once). Progress,\n")
	p("with an estimate of the time left, goes to stderr. Logs, configurations and raw fortio JSON\n")
	p("of the last run are kept in `bench/.cache/run/`.\n\n")
	p("opa-envoy-plugin, the reference for the server's Check target, is not served by the Go module\n")
	p("proxy, so the harness does not install it: build it from its sources\n")
	p("(`go build -o bench/.cache/bin/opa-envoy-plugin ./cmd/opa-envoy-plugin` in a checkout of\n")
	p("github.com/open-policy-agent/opa-envoy-plugin) or pass `-opa-envoy PATH`; without it the server\n")
	p("is compared with `opa run --server`'s REST API only.\n\n")

	p("## Conditions of this run\n\n")
	if o.quick {
		p("**This is a `-quick` smoke run: the numbers are indicative only.**\n\n")
	}
	p("Measured %s, %d run(s) of every scenario, medians reported (throughput also shows the\n",
		res.started.UTC().Format("2006-01-02 15:04 MST"), o.runs)
	p("min–max over the runs); the whole run took %s.\n\n", res.finished.Sub(res.started).Round(time.Second))
	p("**Read the numbers with their conditions.** %s The load generators (wrk, fortio,\n", foreignText(res.foreign))
	p("h2load, the harness's own gRPC/HTTP client) run on the same cores as the proxy, the upstream and\n")
	p("the server under test. Absolute figures are therefore far below what these programs do on dedicated\n")
	p("hardware and vary from run to run; the ratios between peers measured in the same run are the\n")
	p("meaningful part, and even they favour whichever program needs the least CPU per request, because\n")
	p("the client competes with it for the same cores.\n\n")
	p("| machine | |\n|---|---|\n")
	for _, r := range machine() {
		p("| %s | %s |\n", r[0], r[1])
	}
	p("\n### Versions\n\n| peer | version |\n|---|---|\n")
	p("| remora | %s; the proxies run its sidecar build (`make build-sidecar`, the proxy without the mixer and OPA) |\n", e.remoraVersion)
	for _, n := range []string{"nginx", "haproxy", "caddy", "opa", "opa-envoy-plugin", "wrk", "fortio", "h2load"} {
		v, ok := e.peers.version[n]
		if !ok {
			v = "not installed: " + e.peers.missing[n]
		}
		p("| %s | %s |\n", n, strings.ReplaceAll(v, "|", "\\|"))
	}
	p("\n### Parameters\n\n")
	p("- Upstream: nginx, 1 worker process, serving a static 1 KiB file (`/1k`) over HTTP/1.1 and h2c;\n")
	p("  fortio's gRPC ping server for gRPC.\n")
	p("- Every proxy gets %d workers (nginx `worker_processes`, HAProxy `nbthread`, `GOMAXPROCS` for\n", o.workers)
	p("  Caddy, remora and OPA), keeps upstream connections alive and logs nothing per request, except\n")
	p("  remora-full, whose file access log is part of what is measured.\n")
	p("- Order, per proxy: a %s warm-up with fortio at the latency rate, the latency run, the resource run,\n", o.warmup)
	p("  then the throughput run, so that the resident memory read at the resource rate is not what a\n")
	p("  maximum-rate burst left behind (the peak of the whole scenario is shown as VmHWM).\n")
	p("- Throughput: wrk, %d threads, %d connections, %s per run, HTTP/1.1 keep-alive.\n",
		o.threads, o.conns, secs(o.duration))
	p("- Latency (Istio's method): fortio, %d qps, %d connections, %s per run, histogram resolution\n", o.latQPS, o.latConns, secs(o.latDur))
	p("  %g s; *added* latency is the proxy's percentile minus the direct connection's percentile.\n", o.resolution)
	p("- Resources: CPU seconds (utime+stime of every process of the proxy, from `/proc/PID/stat`)\n")
	p("  per 1,000 requests, RSS (`VmRSS` from `/proc/PID/status`) after %s at %d qps, and the peak\n", secs(o.latDur), o.resQPS)
	p("  (`VmHWM`) at the end of the scenario,\n")
	p("  summed over the proxy's processes (nginx: master and workers, so shared pages count once per process).\n")
	p("- Server: %d concurrent callers in a closed loop for %s per run (the harness's own load generator,\n", o.srvConns, secs(o.duration))
	p("  grpc-go with Remora's generated Mixer types and go-control-plane's ext_authz v3 types; net/http\n")
	p("  for OPA's REST API), 8 request shapes of an RBAC policy ([`bench/testdata/policy`](../bench/testdata/policy)),\n")
	p("  every answer checked against the expected decision. *Per CPU-second* divides by the server\n")
	p("  process's CPU seconds, i.e. decisions per second per fully used core. Report batches hold\n")
	p("  %d records with 21 Istio telemetry attributes each, delta-encoded.\n", o.batch)
	p("- Server latency at a fixed load (rows *at %d/s*): the same Checks sent at %d per second for %s\n", o.srvQPS, o.srvQPS, secs(o.latDur))
	p("  (open loop, up to %d in flight), each latency counted from the moment its call was due, so a\n", o.srvConns)
	p("  server that falls behind is charged for the wait. The closed-loop percentiles measure a saturated\n")
	p("  server (queueing behind %d callers); the fixed-rate ones the time a decision takes at a load both\n", o.srvConns)
	p("  servers carry, as Istio's method does for the proxies.\n")
	p("- `remora mixer` keeps a server-side decision cache by default (`policy.decision_cache`,\n")
	p("  docs/policy.md): a decision is stored under the values of the attributes the policy references\n")
	p("  (here `x-user`, method and path), so with 8 request shapes every Check after the first 8 is\n")
	p("  answered from it without evaluating. OPA and opa-envoy-plugin evaluate every request. The\n")
	p("  *no decision cache* rows run `remora mixer` with the cache disabled: every Check evaluates\n")
	p("  the policy, as the peers do.\n\n")

	e.httpTables(&b)
	e.grpcTable(&b)
	e.serverTable(&b)
	e.outageSection(p)
	e.targets(&b)

	if len(res.notes) > 0 {
		p("## Checks and caveats\n\n")
		for _, n := range res.notes {
			p("- **%s** %s\n", n[0], oneLine(n[1]))
		}
		p("\n")
	}
	if len(res.unavailable) > 0 {
		p("## Not measured\n\n| scenario | why |\n|---|---|\n")
		for _, k := range sortedKeys(res.unavailable) {
			p("| %s | %s |\n", k, strings.ReplaceAll(oneLine(res.unavailable[k]), "|", "\\|"))
		}
		p("\n")
	}

	p("## Exact command lines\n\nFrom the last run (ports differ between runs).\n\n```\n")
	for _, k := range sortedKeys(e.commands) {
		p("# %s\n%s\n", k, e.commands[k])
	}
	p("```\n\nInstall commands that ran:\n\n```\n")
	if len(e.peers.commands) == 0 {
		p("# (everything was already in the cache)\n")
	}
	for _, c := range e.peers.commands {
		p("%s\n", c)
	}
	p("```\n\n## Configurations\n\n")
	for _, k := range sortedKeys(e.configs) {
		p("<details><summary>%s</summary>\n\n```\n%s```\n\n</details>\n\n", k, e.configs[k])
	}
	return e.relative(b.String())
}

// relative writes the repository's absolute path as "." so that command
// lines and configurations read the same on every checkout.
func (e *env) relative(s string) string {
	repo, err := filepath.Abs(e.o.repo)
	if err != nil || repo == "/" || repo == "" {
		return s
	}
	return strings.ReplaceAll(s, repo+"/", "./")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

func (e *env) httpTables(b *strings.Builder) {
	res := e.res
	if len(res.http) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	rps := func(n string) float64 { return median(res.http[n], func(r httpRun) float64 { return r.rps }) }
	nginx, haproxy, caddy := rps("nginx"), rps("haproxy"), rps("caddy")

	p("## HTTP/1.1 proxies\n\n### Throughput\n\n![throughput](img/throughput.png)\n\n")
	p("| path | requests/s (median) | min–max | × nginx | × HAProxy | × Caddy | errors |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, pd := range proxies {
		runs, ok := res.http[pd.name]
		if !ok {
			continue
		}
		lo, hi := spread(runs, func(r httpRun) float64 { return r.rps })
		v := rps(pd.name)
		p("| %s | %s | %s–%s | %s | %s | %s | %d |\n", pd.name, fnum(v, 0), fnum(lo, 0), fnum(hi, 0),
			fratio(v, nginx), fratio(v, haproxy), fratio(v, caddy), sum(runs, func(r httpRun) int64 { return r.errors }))
	}
	p("\n")
	for _, pd := range proxies {
		p("- **%s**: %s\n", pd.name, pd.desc)
	}

	p("\n### Latency at %d qps, %d connections (Istio's method)\n\n![latency](img/latency.png)\n\n", e.o.latQPS, e.o.latConns)
	p("Milliseconds, medians over the runs. *Added* is the median over the runs of (the proxy's percentile\n")
	p("minus the direct connection's percentile measured in the same run, moments before); a negative\n")
	p("value means the direct connection's tail was worse in that run, i.e. noise larger than the proxy's cost.\n\n")
	p("| path | p50 | p90 | p99 | p99.9 | added p50 | added p90 | added p99 | added p99.9 | achieved qps | errors |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, pd := range proxies {
		runs, ok := res.http[pd.name]
		if !ok {
			continue
		}
		row := "| " + pd.name
		var added string
		for _, q := range percentiles {
			v := median(runs, func(r httpRun) float64 { return r.lat[q] })
			row += " | " + fms(v)
			if a, ok := res.added(pd.name, q); ok && pd.name != "direct" {
				added += " | " + fmsSigned(a)
			} else {
				added += " | –"
			}
		}
		p("%s%s | %s | %d |\n", row, added, fnum(median(runs, func(r httpRun) float64 { return r.latQPS }), 0),
			sum(runs, func(r httpRun) int64 { return r.latErrors }))
	}

	p("\n### Resources\n\n")
	p("CPU seconds per 1,000 requests (= vCPU per 1,000 requests/s) of the proxy's processes; RSS after the %d qps run, peak RSS at the end of the scenario (after the throughput run).\n\n", e.o.resQPS)
	p("| path | CPU s / 1k req at %d qps | at %d qps | at max rate (wrk) | RSS MiB at %d qps | peak RSS MiB (VmHWM) | achieved qps of the %d qps run |\n", e.o.latQPS, e.o.resQPS, e.o.resQPS, e.o.resQPS)
	p("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, pd := range proxies {
		runs, ok := res.http[pd.name]
		if !ok || pd.name == "direct" {
			continue
		}
		p("| %s | %s | %s | %s | %s | %s | %s |\n", pd.name,
			fnum(median(runs, func(r httpRun) float64 { return r.cpu1k }), 3),
			fnum(median(runs, func(r httpRun) float64 { return r.cpuRes }), 3),
			fnum(median(runs, func(r httpRun) float64 { return r.cpuMax }), 3),
			fmb(int64(median(runs, func(r httpRun) float64 { return float64(r.rss) }))),
			fmb(int64(median(runs, func(r httpRun) float64 { return float64(r.hwm) }))),
			fnum(median(runs, func(r httpRun) float64 { return r.resQPS }), 0))
	}
	if runs, ok := res.http["remora-full"]; ok {
		p("\nThe `remora mixer` beside remora-full had %s MiB RSS at the end of its run.\n",
			fmb(int64(median(runs, func(r httpRun) float64 { return float64(r.helperRSS) }))))
	}
	p("\n")
}

func (e *env) grpcTable(b *strings.Builder) {
	res := e.res
	if len(res.grpc) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## HTTP/2 and gRPC\n\n")
	p("fortio gRPC ping (`fortio load -grpc -ping`) against fortio's gRPC server at the maximum rate and at\n")
	p("%d qps, %d connections; h2load (`-c %d -m 10`, prior-knowledge h2c, 1 KiB) against the nginx upstream.\n",
		e.o.latQPS, e.o.latConns, e.o.latConns)
	p("Through remora means `remora proxy --listen … --upstream …` (quick mode: HTTP/1.1 and h2c listener,\n")
	p("the cluster speaks the downstream's protocol).\n\n")
	p("| path | gRPC ping max /s | p50 ms at %d qps | p90 | p99 | p99.9 | h2load req/s | errors |\n", e.o.latQPS)
	p("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, via := range []string{"direct", "remora"} {
		runs, ok := res.grpc[via]
		if !ok {
			continue
		}
		row := fmt.Sprintf("| %s | %s", via, fnum(median(runs, func(r grpcRun) float64 { return r.maxQPS }), 0))
		for _, q := range percentiles {
			row += " | " + fms(median(runs, func(r grpcRun) float64 { return r.lat[q] }))
		}
		errs := sum(runs, func(r grpcRun) int64 { return r.maxErrors + r.latErrors + r.h2Errors })
		p("%s | %s | %d |\n", row, fnum(median(runs, func(r grpcRun) float64 { return r.h2RPS }), 0), errs)
	}
	p("\n")
}

func (e *env) serverTable(b *strings.Builder) {
	res := e.res
	if len(res.server) == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Server: policy checks and report ingestion\n\n![server](img/server.png)\n\n")
	p("| what | per second (median) | per CPU-second | CPU s / 1k | p50 ms | p90 | p99 | p99.9 | server RSS MiB | errors |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range e.serverOrder(res.server) {
		runs := res.server[k]
		pc := median(runs, perCPU)
		cpu1k := -1.0
		if pc > 0 {
			cpu1k = 1000 / pc
		}
		row := fmt.Sprintf("| %s | %s | %s | %s", k, fnum(median(runs, func(r loadResult) float64 { return r.perSecond }), 0),
			fnum(pc, 0), fnum(cpu1k, 3))
		for _, q := range percentiles {
			row += " | " + fms(median(runs, func(r loadResult) float64 { return r.pct[q] }))
		}
		p("%s | %s | %d |\n", row, fmb(int64(median(runs, func(r loadResult) float64 { return float64(r.rss) }))),
			sum(runs, func(r loadResult) int64 { return r.errors }))
	}
	p("\nReport latencies are per batch of %d records.\n\n", e.o.batch)
}

func perCPU(r loadResult) float64 {
	if r.cpu <= 0 {
		return -1
	}
	return float64(r.ops) / r.cpu
}

// serverOrder lists the server rows present in m: each load as fast as
// its callers go, followed by the same load at the fixed rate of -server-qps.
func (e *env) serverOrder(m map[string][]loadResult) []string {
	order := []string{"remora mixer: Mixer Check", "remora mixer: ext_authz Check",
		"remora mixer, no decision cache: Mixer Check", "remora mixer, no decision cache: ext_authz Check",
		"opa-envoy-plugin: ext_authz Check",
		"opa run --server: REST", "remora mixer: Report (records)"}
	var out []string
	for _, k := range order {
		for _, k := range []string{k, k + e.fixedRateSuffix()} {
			if _, ok := m[k]; ok {
				out = append(out, k)
			}
		}
	}
	return out
}

// targets compares the medians with the brief's targets.
func (e *env) targets(b *strings.Builder) {
	res := e.res
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## Against the targets\n\n| target | measured | verdict |\n|---|---|---|\n")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	rps := func(n string) float64 { return median(res.http[n], func(r httpRun) float64 { return r.rps }) }
	full := rps("remora-full")
	row := func(target, measured, v string) { p("| %s | %s | %s |\n", target, measured, v) }
	nm := "not measured"
	for _, t := range []struct {
		peer string
		want float64
	}{{"nginx", 0.8}, {"haproxy", 1.0}, {"caddy", 2.0}} {
		target := fmt.Sprintf("sidecar (check+report+log) throughput ≥ %.1f × %s", t.want, t.peer)
		if full < 0 || rps(t.peer) <= 0 {
			row(target, nm, nm)
			continue
		}
		ratio := full / rps(t.peer)
		row(target, fmt.Sprintf("%.2f×", ratio), verdict(ratio >= t.want))
	}
	for _, n := range []string{"remora-router", "remora-full"} {
		target := "p99 added ≤ 0.25 ms at 1,000 rps (" + n + ")"
		a, ok := res.added(n, 99)
		if !ok || e.o.latQPS != 1000 || e.o.latConns != 16 {
			row(target, nm, nm)
			continue
		}
		row(target, fmsSigned(a)+" ms", verdict(a <= 0.00025))
	}
	if runs, ok := res.http["remora-full"]; ok && e.o.resQPS == 2000 {
		rss := median(runs, func(r httpRun) float64 { return float64(r.rss) })
		row("sidecar ≤ 25 MB RSS at 2,000 rps", fmt.Sprintf("%s MiB (%.1f MB)", fmb(int64(rss)), rss/1e6), verdict(rss > 0 && rss <= 25e6))
		cpu := median(runs, func(r httpRun) float64 { return r.cpuRes })
		row("sidecar ≤ 0.1 vCPU per 1,000 rps", fnum(cpu, 3)+" vCPU per 1,000 rps (at 2,000 rps)", verdict(cpu >= 0 && cpu <= 0.1))
	} else {
		row("sidecar ≤ 25 MB RSS at 2,000 rps", nm, nm)
		row("sidecar ≤ 0.1 vCPU per 1,000 rps", nm, nm)
	}
	e.goBenchTargets(row)
	hit := median(res.http["remora-full"], func(r httpRun) float64 {
		if r.cacheHits+r.cacheMisses == 0 {
			return -1
		}
		return r.cacheHits / (r.cacheHits + r.cacheMisses)
	})
	if hit >= 0 {
		row("check-cache ≥ 95 % hit ratio on repetitive traffic", fmt.Sprintf("%.3f %% (remora-full: one request shape repeated; from the sidecar's `remora_mixer_client_check_cache_{hits,misses}_total`)", hit*100), verdict(hit >= 0.95))
	} else {
		row("check-cache ≥ 95 % hit ratio on repetitive traffic", nm, nm)
	}
	// The target is against opa-envoy-plugin; `opa run --server` is the
	// fallback when no opa-envoy-plugin binary was available.
	ref, refName := "opa-envoy-plugin: ext_authz Check", "opa-envoy-plugin (gRPC ext_authz)"
	if median(res.server[ref], perCPU) <= 0 {
		ref, refName = "opa run --server: REST", "`opa run --server` REST (opa-envoy-plugin not measured)"
	}
	oc := median(res.server[ref], perCPU)
	p99 := func(k string) float64 { return median(res.server[k], func(r loadResult) float64 { return r.pct[99] }) }
	fixed := e.fixedRateSuffix()
	for _, v := range []struct{ key, what string }{
		{"remora mixer: ext_authz Check", "remora ext_authz (decision cache on, the default)"},
		{"remora mixer, no decision cache: ext_authz Check", "remora ext_authz without the decision cache"},
	} {
		mc := median(res.server[v.key], perCPU)
		if mc > 0 && oc > 0 {
			row("server Check ≥ 3 × decisions/s per core of "+refName+", "+v.what, fmt.Sprintf("%.2f×", mc/oc), verdict(mc/oc >= 3))
		} else {
			row("server Check ≥ 3 × opa-envoy-plugin's decisions/s per core, "+v.what, nm, nm)
		}
		for _, load := range []struct{ suffix, what string }{
			{"", fmt.Sprintf("saturated, %d callers", e.o.srvConns)},
			{fixed, fmt.Sprintf("at %d/s", e.o.srvQPS)},
		} {
			m99, o99 := p99(v.key+load.suffix), p99(ref+load.suffix)
			name := "server Check p99 ≤ ⅓ of " + refName + "'s p99, " + v.what + ", " + load.what
			if m99 > 0 && o99 > 0 {
				row(name, fmt.Sprintf("%s ms vs %s ms (%.2f×)", fms(m99), fms(o99), m99/o99), verdict(m99 <= o99/3))
			} else {
				row(name, nm, nm)
			}
		}
	}
	rc := median(res.server["remora mixer: Report (records)"], perCPU)
	if rc > 0 {
		row("Report ingestion ≥ 500,000 records/s per core", fmt.Sprintf("%.0f records per CPU-second", rc), verdict(rc >= 500000))
	} else {
		row("Report ingestion ≥ 500,000 records/s per core", nm, nm)
	}
	e.outageTarget(row)
	p("\nPer core means per CPU-second of the server process. Both servers' p99 are measured with the same\n")
	p("%d callers on the same machine, saturated and at %d/s.\n\n", e.o.srvConns, e.o.srvQPS)
}

// foreignText says how much CPU programs other than the harness and its
// children took while it measured: /proc/stat's busy time minus the
// harness's own rusage (its children's included).
func foreignText(f foreignCPU) string {
	if !f.ok {
		return "The machine is a virtual machine that may be shared with other work (not measured in this run)."
	}
	steal := ""
	if f.steal >= 1 {
		steal = fmt.Sprintf(" The hypervisor took %.0f CPU seconds (steal time) for other guests.", f.steal)
	}
	if f.cores < 0.05 {
		return fmt.Sprintf("The machine was otherwise quiet: programs other than the harness and the processes it started used %.1f CPU seconds while it measured (%.1f %% of one core; /proc/stat's busy time minus the harness's own).%s",
			f.seconds, 100*f.cores, steal)
	}
	return fmt.Sprintf("Other work shared the machine: programs other than the harness and the processes it started used %.0f CPU seconds while it measured, %.2f cores on average, so the figures are lower and noisier than on a quiet machine.%s",
		f.seconds, f.cores, steal)
}
