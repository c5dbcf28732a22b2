package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"syscall"
	"time"
)

// outageRun is the report-delivery fault test: a remora-full sidecar
// under steady load whose mixer server is killed (SIGKILL) and, after the
// outage, started again on the same ports. Every request the sidecar
// served must end up delivered, or dropped and counted (beyond the
// sidecar's buffer), never silently lost.
type outageRun struct {
	outage    time.Duration // from the kill until the new server was ready
	qps       int
	requests  float64 // the sidecar's remora_http_downstream_rq_total
	delivered float64 // remora_mixer_client_report_records_sent_total: acknowledged by a server
	dropped   float64 // remora_mixer_client_report_records_dropped_total
	queued    float64 // remora_mixer_client_report_queue_records when the harness stopped waiting
	restarted float64 // istio_requests_total on the restarted server
	non200    int64   // fortio's answers other than 200 (fail-close checks while the server was away)
	logLines  int     // access-log lines
	catchUp   time.Duration
}

// lost is what is neither delivered, nor counted as dropped, nor waiting.
func (r outageRun) lost() float64 { return r.requests - r.delivered - r.dropped - r.queued }

// measureOutage runs the fault test once: o.outageBefore of load, the
// server killed for o.outage, load for o.outageAfter more, then waits for
// the sidecar's report queue to empty.
func (e *env) measureOutage(ctx context.Context) error {
	const name = "outage"
	for _, n := range []string{"nginx", "fortio"} {
		if !e.peers.has(n) {
			e.unavailable(name, n+" is not installed: "+e.peers.missing[n])
			return nil
		}
	}
	listen, err := freePort()
	if err != nil {
		return err
	}
	os.Remove(e.path("remora-access.log"))
	rp, err := startRemoraFull(ctx, e, listen)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.unavailable(name, err.Error())
		return nil
	}
	defer rp.stop()
	url := "http://" + listen + "/1k"
	if err := waitReady(ctx, rp.main, 15*time.Second, httpReady(url, http.Header{"X-User": {"alice"}}, 200)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.unavailable(name, notAvailable("remora-full", err))
		return nil
	}
	o := e.o
	run := outageRun{qps: o.outageQPS}
	type loadDone struct {
		f   fortioResult
		err error
	}
	load := make(chan loadDone, 1)
	go func() {
		f, err := e.fortio(ctx, name, url, o.outageQPS, 8, o.outageBefore+o.outage+o.outageAfter, false)
		load <- loadDone{f, err}
	}()
	if !sleepCtx(ctx, o.outageBefore) {
		return ctx.Err()
	}
	first := rp.mixer
	_ = syscall.Kill(-first.proc.pid(), syscall.SIGKILL)
	if err := first.proc.wait(ctx); ctx.Err() != nil {
		return ctx.Err()
	} else if err == nil {
		return fmt.Errorf("outage: the mixer server exited by itself instead of being killed")
	}
	killed := time.Now()
	logf("outage: mixer server killed; restarting it in %s", o.outage)
	if !sleepCtx(ctx, o.outage) {
		return ctx.Err()
	}
	second, err := e.startMixerServerAt(ctx, "outage-mixer-restarted", first.grpc, first.mon, false)
	if err != nil {
		return fmt.Errorf("outage: restart the mixer server: %w", err)
	}
	rp.helpers = append(rp.helpers, second.proc)
	ready := time.Now()
	run.outage = ready.Sub(killed)
	ld := <-load
	if ld.err != nil {
		return fmt.Errorf("outage: load: %w", ld.err)
	}
	run.non200 = ld.f.errors

	// Wait for the sidecar to deliver what it queued while the server was away.
	deadline := time.Now().Add(60 * time.Second)
	for {
		q, err := scrapeCounter(rp.stats, "remora_mixer_client_report_queue_records")
		if err != nil {
			return fmt.Errorf("outage: sidecar stats: %w", err)
		}
		run.queued = q
		if q == 0 || time.Now().After(deadline) {
			break
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
	run.catchUp = time.Since(ready)
	for _, m := range []struct {
		url, name string
		v         *float64
	}{
		{rp.stats, "remora_http_downstream_rq_total", &run.requests},
		{rp.stats, "remora_mixer_client_report_records_sent_total", &run.delivered},
		{rp.stats, "remora_mixer_client_report_records_dropped_total", &run.dropped},
		{"http://" + second.mon + "/metrics", "istio_requests_total", &run.restarted},
	} {
		if *m.v, err = scrapeCounter(m.url, m.name); err != nil {
			return fmt.Errorf("outage: %s: %w", m.name, err)
		}
	}
	if rp.log != "" {
		if b, err := os.ReadFile(rp.log); err == nil {
			run.logLines = bytes.Count(b, []byte("\n"))
		}
	}
	e.res.outage = &run
	logf("outage: %.0f requests, %.0f reported, %.0f dropped (counted), %.0f still queued, %.0f lost",
		run.requests, run.delivered, run.dropped, run.queued, run.lost())
	return nil
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// outageSection writes the fault test's table.
func (e *env) outageSection(p func(string, ...any)) {
	r := e.res.outage
	if r == nil {
		return
	}
	p("## Report delivery across a mixer outage\n\n")
	p("A remora-full sidecar (mixer check with fail_policy close, reports, file access log) under\n")
	p("%d requests/s from fortio (8 connections); its `remora mixer` is killed with SIGKILL after\n", r.qps)
	p("%s and started again on the same ports %s later; the load goes on for %s after that, then\n",
		e.o.outageBefore, r.outage.Round(100*time.Millisecond), e.o.outageAfter)
	p("the harness waits (up to 60 s) for the sidecar's report queue to empty. Counts are the sidecar's\n")
	p("own: every request it served is one report record.\n\n")
	p("| requests served | records delivered | dropped (counted) | still queued | **lost** | non-200 answers | access-log lines | on the restarted server | queue empty after |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	p("| %.0f | %.0f | %.0f | %.0f | **%.0f** | %d | %d | %.0f | %s |\n\n", r.requests, r.delivered, r.dropped, r.queued,
		r.lost(), r.non200, r.logLines, r.restarted, r.catchUp.Round(100*time.Millisecond))
	p("Non-200 answers are checks the sidecar could not answer from its cache while the server was\n")
	p("away (fail_policy close); they are reported like every other request. *On the restarted server*\n")
	p("counts the records that reached the second server process, the backlog included.\n\n")
}

// outageTarget is the fault test's row of the targets table.
func (e *env) outageTarget(row func(target, measured, verdict string)) {
	const target = "0 reports lost across a server restart or a 30 s outage (drops beyond the buffer counted)"
	r := e.res.outage
	if r == nil {
		row(target, "not measured", "not measured")
		return
	}
	v := "**not met**"
	if r.lost() == 0 && r.queued == 0 && r.outage >= 30*time.Second {
		v = "met"
	} else if r.lost() == 0 && r.queued == 0 {
		v = fmt.Sprintf("met for a %s outage (shorter than 30 s)", r.outage.Round(time.Second))
	}
	row(target, fmt.Sprintf("%.0f lost, %.0f dropped and counted, of %.0f records across a %s outage at %d rps",
		r.lost(), r.dropped, r.requests, r.outage.Round(100*time.Millisecond), r.qps), v)
}
