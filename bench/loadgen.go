package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// checkCase is one request of the RBAC workload with the decision the
// policy must give (testdata/policy); every server's answers are compared
// with it, so a benchmark of a server that decides wrongly fails.
type checkCase struct {
	user, method, path string
	allow              bool
}

var checkCases = []checkCase{
	{"alice", "GET", "/1k", true},
	{"alice", "GET", "/api/reviews/1", true},
	{"alice", "POST", "/api/reviews", false},
	{"bob", "PUT", "/api/reviews/2", true},
	{"bob", "DELETE", "/api/reviews/2", false},
	{"carol", "GET", "/admin/users", true},
	{"dave", "GET", "/api/reviews/1", false},
	{"mallory", "GET", "/1k", false},
}

// loadResult is one closed-loop load: callers goroutines each send the
// next request as soon as the previous one is answered.
type loadResult struct {
	ops       int64
	perSecond float64
	pct       map[float64]float64 // seconds
	errors    int64
	cpu       float64 // server CPU seconds during the load
	rss       int64
}

// loadCall is one request of a server load; it returns an error for a failed
// or wrong answer.
type loadCall func(ctx context.Context, worker, i int) error

// closedLoop runs call from callers goroutines for d and measures every
// call's latency.
//
// Calls run under ctx itself, not under a deadline: a call that is in
// flight when d ends completes and counts, so that no call is cut short and
// miscounted as a failure.
func closedLoop(ctx context.Context, callers int, d time.Duration, fn loadCall) loadResult {
	var errs atomic.Int64
	lats := make([][]time.Duration, callers)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<16)
			for i := w; ctx.Err() == nil; i += callers {
				t := time.Now()
				if !t.Before(end) {
					break
				}
				err := fn(ctx, w, i)
				if ctx.Err() != nil {
					break // interrupted
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				l = append(l, time.Since(t))
			}
			lats[w] = l
		}()
	}
	wg.Wait()
	return summarize(lats, time.Since(start), errs.Load(), firstErr.Load())
}

// openLoop sends qps calls per second for d, whatever the answers' pace,
// from up to callers goroutines. A call's latency runs from the moment it
// was handed out, not from when a caller was free to send it, so a server
// that falls behind is charged for the wait (no coordinated omission).
func openLoop(ctx context.Context, callers, qps int, d time.Duration, fn loadCall) loadResult {
	var errs atomic.Int64
	lats := make([][]time.Duration, callers)
	var firstErr atomic.Value
	type job struct {
		i    int       // the call's index
		sent time.Time // when it was handed out
	}
	due := make(chan job, callers*64)
	var wg sync.WaitGroup
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<14)
			for j := range due {
				if ctx.Err() != nil {
					continue // drain: interrupted
				}
				err := fn(ctx, w, j.i)
				if ctx.Err() != nil {
					continue
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				l = append(l, time.Since(j.sent))
			}
			lats[w] = l
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(qps)
	n := int(d / interval)
	for k := 0; k < n && ctx.Err() == nil; k++ {
		if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		// Stamped when handed out, not when due: a late wake-up of this
		// loop is the load generator's delay, not the server's.
		due <- job{i: k, sent: time.Now()}
	}
	close(due)
	wg.Wait()
	return summarize(lats, time.Since(start), errs.Load(), firstErr.Load())
}

// summarize turns the callers' latencies into a loadResult.
func summarize(lats [][]time.Duration, elapsed time.Duration, errs int64, firstErr any) loadResult {
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := loadResult{ops: int64(len(all)), errors: errs, pct: map[float64]float64{}}
	r.perSecond = float64(r.ops) / elapsed.Seconds()
	for _, p := range percentiles {
		if len(all) > 0 {
			i := int(float64(len(all))*p/100+0.5) - 1
			i = max(0, min(i, len(all)-1))
			r.pct[p] = all[i].Seconds()
		}
	}
	if firstErr != nil {
		logf("load: %d failed calls, the first: %v", r.errors, firstErr)
	}
	return r
}

// measureCheck runs a server's Check load twice, as fast as the callers
// go (throughput, and latency under saturation) and at the fixed rate of
// -server-qps (latency at a load both servers carry), and records both
// under key and key+fixedRateSuffix.
func (e *env) measureCheck(ctx context.Context, pgid int, key string, fn loadCall) {
	m := measured(pgid, func() loadResult { return closedLoop(ctx, e.o.srvConns, e.o.duration, fn) })
	e.res.server[key] = append(e.res.server[key], m)
	logf("%s: %.0f/s p99 %s", key, m.perSecond, ms(m.pct[99]))
	if ctx.Err() != nil {
		return
	}
	m = measured(pgid, func() loadResult { return openLoop(ctx, e.o.srvConns, e.o.srvQPS, e.o.latDur, fn) })
	k := key + e.fixedRateSuffix()
	e.res.server[k] = append(e.res.server[k], m)
	logf("%s: p99 %s", k, ms(m.pct[99]))
}

// fixedRateSuffix names the fixed-rate variant of a server row.
func (e *env) fixedRateSuffix() string { return fmt.Sprintf(" at %d/s", e.o.srvQPS) }

// measured wraps a load with the server process's CPU and RSS readings.
func measured(pgid int, load func() loadResult) loadResult {
	u0, err0 := readUsage(pgid)
	r := load()
	u1, err1 := readUsage(pgid)
	if err0 == nil && err1 == nil {
		r.cpu = u1.cpu - u0.cpu
		r.rss = u1.rss
	}
	return r
}

// measureMixer measures `remora mixer`: Mixer Check and ext_authz Check
// decisions and Report ingestion.
func (e *env) measureMixer(ctx context.Context, r int) error { return e.measureMixerServer(ctx, false) }

// measureMixerNoCache measures the Checks of `remora mixer` with its
// server-side decision cache off: every Check evaluates the policy.
func (e *env) measureMixerNoCache(ctx context.Context, r int) error {
	return e.measureMixerServer(ctx, true)
}

func (e *env) measureMixerServer(ctx context.Context, noCache bool) error {
	name, proc, label := "server-remora", "remora-mixer", "remora mixer: "
	if noCache {
		name, proc, label = "server-remora-no-cache", "remora-mixer-no-cache", "remora mixer, no decision cache: "
	}
	if _, skip := e.res.unavailable[name]; skip {
		return nil
	}
	srv, err := e.startMixerServer(ctx, proc, noCache)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.unavailable(name, notAvailable("remora", err))
		return nil
	}
	defer srv.proc.stop(3 * time.Second)
	conn, err := grpc.NewClient(srv.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("mixer: dial: %w", err)
	}
	defer conn.Close()
	mixer := mixerv1.NewMixerClient(conn)
	authz := authv3.NewAuthorizationClient(conn)

	mixerReqs := make([]*mixerv1.CheckRequest, len(checkCases))
	for i, c := range checkCases {
		mixerReqs[i] = &mixerv1.CheckRequest{
			Attributes:      attributes.Compress(checkBag(c), attributes.GlobalWordCount()),
			GlobalWordCount: attributes.GlobalWordCount(),
		}
	}
	// Each caller keeps its own dedup counter so that requests differ.
	var dedup atomic.Int64
	checkMixer := func(ctx context.Context, _, i int) error {
		c := checkCases[i%len(checkCases)]
		req := mixerReqs[i%len(checkCases)]
		// A fresh message per call: the shared one must not be mutated.
		msg := &mixerv1.CheckRequest{Attributes: req.Attributes, GlobalWordCount: req.GlobalWordCount,
			DeduplicationId: strconv.FormatInt(dedup.Add(1), 36)}
		resp, err := mixer.Check(ctx, msg)
		if err != nil {
			return err
		}
		got := resp.GetPrecondition().GetStatus().GetCode() == int32(codes.OK)
		if got != c.allow {
			return fmt.Errorf("mixer check %v: allowed=%v, want %v", c, got, c.allow)
		}
		return nil
	}
	checkAuthz := authzCaller(authz)
	// One call of each first: a wrong decision or a missing service is
	// reported instead of measured.
	for _, f := range []struct {
		name string
		call loadCall
	}{{"mixer-check", checkMixer}, {"extauthz-check", checkAuthz}} {
		for i := range checkCases {
			if err := f.call(ctx, 0, i); err != nil {
				e.unavailable(name+"-"+f.name, err.Error())
				break
			}
		}
	}
	pgid := srv.proc.pid()
	if _, bad := e.res.unavailable[name+"-mixer-check"]; !bad {
		e.measureCheck(ctx, pgid, label+"Mixer Check", checkMixer)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, bad := e.res.unavailable[name+"-extauthz-check"]; !bad {
		e.measureCheck(ctx, pgid, label+"ext_authz Check", checkAuthz)
	}
	if ctx.Err() != nil || noCache {
		return ctx.Err()
	}

	// Report: batches of e.o.batch records, delta-encoded as a sidecar sends them.
	batches := make([]*mixerv1.ReportRequest, 4)
	for b := range batches {
		bags := make([]attributes.Bag, e.o.batch)
		for i := range bags {
			bags[i] = reportBag(b*e.o.batch + i)
		}
		batches[b] = attributes.EncodeReport(bags, mixerv1.ReportRequest_DELTA_ENCODING, attributes.GlobalWordCount())
	}
	report := func(ctx context.Context, _, i int) error {
		_, err := mixer.Report(ctx, batches[i%len(batches)])
		return err
	}
	if err := report(ctx, 0, 0); err != nil {
		e.unavailable("server-remora-report", "Report: "+err.Error())
		return nil
	}
	m := measured(pgid, func() loadResult { return closedLoop(ctx, e.o.srvConns, e.o.duration, report) })
	m.perSecond *= float64(e.o.batch) // records, not batches
	m.ops *= int64(e.o.batch)
	e.res.server["remora mixer: Report (records)"] = append(e.res.server["remora mixer: Report (records)"], m)
	logf("report: %.0f records/s", m.perSecond)
	return nil
}

// authzCaller returns a closed-loop call of ext_authz Check with the
// workload's requests, as Envoy's ext_authz filter sends them.
func authzCaller(authz authv3.AuthorizationClient) loadCall {
	reqs := make([]*authv3.CheckRequest, len(checkCases))
	for i, c := range checkCases {
		reqs[i] = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/default/sa/client"},
			Destination: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/default/sa/reviews"},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: "bench", Method: c.method, Path: c.path, Host: "reviews.default.svc.cluster.local",
				Scheme: "http", Protocol: "HTTP/1.1",
				Headers: map[string]string{":method": c.method, ":path": c.path, ":authority": "reviews",
					"x-user": c.user, "user-agent": "remora-bench", "accept": "*/*"},
			}},
		}}
	}
	return func(ctx context.Context, _, i int) error {
		c := checkCases[i%len(checkCases)]
		resp, err := authz.Check(ctx, reqs[i%len(checkCases)])
		if err != nil {
			return err
		}
		got := resp.GetStatus().GetCode() == int32(codes.OK)
		if got != c.allow {
			return fmt.Errorf("ext_authz check %v: allowed=%v, want %v", c, got, c.allow)
		}
		return nil
	}
}

// measureOPAEnvoy measures opa-envoy-plugin's gRPC ext_authz server with the
// same policy, when a binary of it is available (-opa-envoy or
// .cache/bin/opa-envoy-plugin). It is not installed by the harness: the Go
// module proxy does not serve it, so it has to be built from its sources.
func (e *env) measureOPAEnvoy(ctx context.Context, r int) error {
	const name = "server-opa-envoy-plugin"
	if _, skip := e.res.unavailable[name]; skip {
		return nil
	}
	exe := e.o.opaEnvoy
	if exe == "" {
		exe = filepath.Join(e.peers.cache, "bin", "opa-envoy-plugin")
	}
	if _, err := os.Stat(exe); err != nil {
		e.unavailable(name, "no opa-envoy-plugin binary (the Go module proxy does not serve it; build it from "+
			"github.com/open-policy-agent/opa-envoy-plugin and pass -opa-envoy PATH)")
		return nil
	}
	if _, ok := e.peers.version["opa-envoy-plugin"]; !ok {
		out, _ := exec.CommandContext(ctx, exe, "version").CombinedOutput()
		v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		e.peers.version["opa-envoy-plugin"] = v + " (the OPA it embeds; opa-envoy-plugin built from its source, see Running it)"
	}
	httpAddr, err := freePort()
	if err != nil {
		return err
	}
	grpcAddr, err := freePort()
	if err != nil {
		return err
	}
	policy, err := filepath.Abs("testdata/policy")
	if err != nil {
		return err
	}
	argv := []string{exe, "run", "--server", "--addr", httpAddr, "--log-level", "error", "--skip-version-check",
		"--set", "plugins.envoy_ext_authz_grpc.addr=" + grpcAddr,
		"--set", "plugins.envoy_ext_authz_grpc.path=envoy/authz/allow",
		"--set", "decision_logs.console=false", policy}
	env := []string{"GOMAXPROCS=" + strconv.Itoa(e.o.workers)}
	e.commands["opa-envoy-plugin"] = envPrefix(env) + shellJoin(argv)
	p, err := e.ps.start("opa-envoy-plugin", e.path("opa-envoy-plugin.log"), env, argv...)
	if err != nil {
		return err
	}
	defer p.stop(3 * time.Second)
	if err := waitReady(ctx, p, 20*time.Second, tcpReady(grpcAddr)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.unavailable(name, err.Error())
		return nil
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("opa-envoy-plugin: dial: %w", err)
	}
	defer conn.Close()
	call := authzCaller(authv3.NewAuthorizationClient(conn))
	for i := range checkCases {
		if err := call(ctx, 0, i); err != nil {
			e.unavailable(name, err.Error())
			return nil
		}
	}
	e.measureCheck(ctx, p.pid(), "opa-envoy-plugin: ext_authz Check", call)
	return nil
}

// checkBag is the Mixer Check attribute bag of c, as a sidecar builds it.
func checkBag(c checkCase) attributes.Bag {
	return attributes.BagOf(map[string]attributes.Value{
		attributes.RequestMethod: attributes.String(c.method),
		attributes.RequestPath:   attributes.String(c.path),
		attributes.RequestHost:   attributes.String("reviews.default.svc.cluster.local"),
		attributes.RequestScheme: attributes.String("http"),
		attributes.RequestHeaders: attributes.StringMapValue(attributes.StringMapOf(map[string]string{
			":method": c.method, ":path": c.path, ":authority": "reviews", "x-user": c.user,
			"user-agent": "remora-bench", "accept": "*/*"})),
		attributes.RequestID:              attributes.String("bench"),
		attributes.SourcePrincipal:        attributes.String("spiffe://cluster.local/ns/default/sa/client"),
		attributes.SourceIP:               attributes.IPAddress(netip.MustParseAddr("10.0.0.1")),
		attributes.DestinationServiceHost: attributes.String("reviews.default.svc.cluster.local"),
		attributes.DestinationPrincipal:   attributes.String("spiffe://cluster.local/ns/default/sa/reviews"),
		attributes.ContextProtocol:        attributes.String(attributes.ProtocolHTTP),
		attributes.ContextReporterKind:    attributes.String(attributes.ReporterInbound),
	})
}

// reportBag is record i of a Report batch: Istio's standard telemetry
// attributes with a few services, codes and sizes.
func reportBag(i int) attributes.Bag {
	svc := []string{"reviews", "ratings", "details", "productpage"}[i%4]
	code := []int64{200, 200, 200, 200, 200, 200, 404, 503}[i%8]
	now := time.Unix(1_700_000_000, int64(i)*1000)
	return attributes.BagOf(map[string]attributes.Value{
		attributes.SourceWorkloadName:           attributes.String("productpage-v1"),
		attributes.SourceWorkloadNamespace:      attributes.String("default"),
		attributes.SourcePrincipal:              attributes.String("spiffe://cluster.local/ns/default/sa/productpage"),
		attributes.SourceUID:                    attributes.String("kubernetes://productpage-v1-abc.default"),
		attributes.DestinationWorkloadName:      attributes.String(svc + "-v1"),
		attributes.DestinationWorkloadNamespace: attributes.String("default"),
		attributes.DestinationPrincipal:         attributes.String("spiffe://cluster.local/ns/default/sa/" + svc),
		attributes.DestinationServiceHost:       attributes.String(svc + ".default.svc.cluster.local"),
		attributes.DestinationServiceName:       attributes.String(svc),
		attributes.DestinationServiceNamespace:  attributes.String("default"),
		attributes.RequestMethod:                attributes.String("GET"),
		attributes.RequestPath:                  attributes.String("/api/" + svc + "/" + strconv.Itoa(i%50)),
		attributes.RequestSize:                  attributes.Int64(int64(100 + i%200)),
		attributes.ResponseSize:                 attributes.Int64(int64(1024 + i%4096)),
		attributes.ResponseCode:                 attributes.Int64(code),
		attributes.ResponseDuration:             attributes.Duration(time.Duration(1+i%40) * time.Millisecond),
		attributes.RequestTime:                  attributes.Timestamp(now),
		attributes.ResponseTime:                 attributes.Timestamp(now.Add(time.Millisecond)),
		attributes.ContextProtocol:              attributes.String(attributes.ProtocolHTTP),
		attributes.ContextReporterKind:          attributes.String(attributes.ReporterInbound),
		attributes.ConnectionMTLS:               attributes.Bool(true),
	})
}

// measureOPA measures `opa run --server`'s REST API with the same policy
// and the input document opa-envoy-plugin builds for the same requests.
func (e *env) measureOPA(ctx context.Context, r int) error {
	const name = "server-opa"
	if _, skip := e.res.unavailable[name]; skip {
		return nil
	}
	if !e.peers.has("opa") {
		e.unavailable(name, "opa is not installed: "+e.peers.missing["opa"])
		return nil
	}
	addr, err := freePort()
	if err != nil {
		return err
	}
	policy, err := filepath.Abs("testdata/policy")
	if err != nil {
		return err
	}
	argv := []string{e.peers.path["opa"], "run", "--server", "--addr", addr, "--log-level", "error",
		"--skip-version-check", policy}
	env := []string{"GOMAXPROCS=" + strconv.Itoa(e.o.workers)}
	e.commands["opa"] = envPrefix(env) + shellJoin(argv)
	p, err := e.ps.start("opa", e.path("opa.log"), env, argv...)
	if err != nil {
		return err
	}
	defer p.stop(3 * time.Second)
	if err := waitReady(ctx, p, 15*time.Second, httpReady("http://"+addr+"/health", nil, 200)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.unavailable(name, err.Error())
		return nil
	}
	bodies := make([][]byte, len(checkCases))
	for i, c := range checkCases {
		in := map[string]any{"input": map[string]any{
			"attributes": map[string]any{
				"source":      map[string]any{"principal": "spiffe://cluster.local/ns/default/sa/client"},
				"destination": map[string]any{"principal": "spiffe://cluster.local/ns/default/sa/reviews"},
				"request": map[string]any{"http": map[string]any{
					"id": "bench", "method": c.method, "path": c.path, "host": "reviews.default.svc.cluster.local",
					"scheme": "http", "protocol": "HTTP/1.1",
					"headers": map[string]string{":method": c.method, ":path": c.path, ":authority": "reviews",
						"x-user": c.user, "user-agent": "remora-bench", "accept": "*/*"},
				}},
			},
			"parsed_path":  splitPath(c.path),
			"parsed_query": map[string]any{},
			"parsed_body":  nil,
		}}
		if bodies[i], err = json.Marshal(in); err != nil {
			return err
		}
	}
	url := "http://" + addr + "/v1/data/envoy/authz/allow"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: e.o.srvConns, MaxConnsPerHost: e.o.srvConns}}
	defer client.CloseIdleConnections()
	call := func(ctx context.Context, _, i int) error {
		c := checkCases[i%len(checkCases)]
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i%len(checkCases)]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("opa: %d %s", resp.StatusCode, b)
		}
		var out struct{ Result *bool }
		if err := json.Unmarshal(b, &out); err != nil || out.Result == nil {
			return fmt.Errorf("opa: no boolean result in %s", b)
		}
		if *out.Result != c.allow {
			return fmt.Errorf("opa %v: allowed=%v, want %v", c, *out.Result, c.allow)
		}
		return nil
	}
	for i := range checkCases {
		if err := call(ctx, 0, i); err != nil {
			e.unavailable(name, err.Error())
			return nil
		}
	}
	e.measureCheck(ctx, p.pid(), "opa run --server: REST", call)
	return nil
}

func splitPath(p string) []string {
	var out []string
	for _, s := range bytes.Split([]byte(p), []byte("/")) {
		if len(s) > 0 {
			out = append(out, string(s))
		}
	}
	return out
}
