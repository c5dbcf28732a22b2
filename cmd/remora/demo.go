//go:build !sidecar

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func init() {
	register(&command{name: "demo", summary: "run server, sidecar and sample upstream on loopback with sample traffic", run: runDemo})
}

const demoUsage = `[--keep] [--dir DIR]

Starts, as separate processes on loopback, remora mixer (the embedded
default policy, standard metrics and a demo quota), a remora proxy sidecar
with the mixer filter and a file access log, and a sample upstream (HTTP
and gRPC); sends a mix of traffic through the sidecar and prints what
happened. Every process started is stopped on exit or interrupt.`

// demoMixerConfig adds a quota to the mixer's embedded defaults.
const demoMixerConfig = `grpc: {address: "127.0.0.1:%d"}
monitoring: {address: "127.0.0.1:%d"}
quotas:
- name: ratings-rate
  max_amount: 5
  window: 10s
`

// demoProxyConfig is the inbound sidecar of a "reviews" workload.
const demoProxyConfig = `node: {id: sidecar~reviews-v1, cluster: reviews}
admin: {address: "127.0.0.1:%[1]d"}
listeners:
- name: inbound
  address: "127.0.0.1:%[2]d"
  direction: inbound
  filter_chains:
  - http_connection_manager:
      stat_prefix: inbound
      access_log:
      - {type: file, config: {path: %[3]q, flush_interval: 100ms}}
      http_filters:
      - name: mixer
        config:
          server:
            address: "127.0.0.1:%[4]d"
            check: {fail_policy: open}
            report: {max_batch_time: 200ms}
          identity:
            uid: kubernetes://reviews-v1-545db77b95-2ps7q.default
            namespace: default
            workload: reviews-v1
            labels: {app: reviews, version: v1}
            service_host: reviews.default.svc.cluster.local
            service_name: reviews
      route_config:
        virtual_hosts:
        - name: reviews
          domains: ["*"]
          routes:
          - match: {prefix: /grpc.health.v1.Health/}
            route: {cluster: reviews-grpc}
          - match: {prefix: /ratings}
            route: {cluster: reviews-http}
            typed_per_filter_config:
              mixer: {quotas: [{name: ratings-rate}]}
          - match: {prefix: /reviews}
            route: {cluster: reviews-http}
          - match: {prefix: /admin}
            route: {cluster: reviews-http}
clusters:
- name: reviews-http
  endpoints: [{address: "127.0.0.1:%[5]d"}]
- name: reviews-grpc
  protocol: http2
  endpoints: [{address: "127.0.0.1:%[6]d"}]
`

// demo is one run: its processes, ports and files.
type demo struct {
	exe, dir string
	stdout   io.Writer
	procs    []*demoProc
	ports    struct{ upHTTP, upGRPC, mixerGRPC, mixerMon, sidecar, admin int }
	client   *http.Client
}

type demoProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", demoUsage, stderr)
	keep := fs.Bool("keep", false, "leave everything running until Ctrl-C")
	dirFlag := fs.String("dir", "", "`directory` for configurations and logs (default: a temporary directory, removed at exit)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &demo{exe: exe, dir: *dirFlag, stdout: stdout, client: &http.Client{Timeout: 10 * time.Second}}
	if d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "remora-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(d.dir)
	} else if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	defer d.stopAll()

	if err := d.start(ctx); err != nil {
		return err
	}
	if err := d.traffic(ctx); err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(stdout, "\nEverything keeps running; press Ctrl-C to stop.")
		select {
		case <-ctx.Done():
		case <-d.anyExited():
			return errors.New("a demo process exited; see its log above")
		}
	}
	return nil
}

// start writes the configurations and starts upstream, mixer and sidecar,
// each once the one before it is ready.
func (d *demo) start(ctx context.Context) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	p := &d.ports
	p.upHTTP, p.upGRPC, p.mixerGRPC, p.mixerMon, p.sidecar, p.admin = ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	mixerCfg := filepath.Join(d.dir, "mixer.yaml")
	proxyCfg := filepath.Join(d.dir, "proxy.yaml")
	if err := os.WriteFile(mixerCfg, fmt.Appendf(nil, demoMixerConfig, p.mixerGRPC, p.mixerMon), 0o644); err != nil {
		return err
	}
	proxyYAML := fmt.Appendf(nil, demoProxyConfig, p.admin, p.sidecar, d.accessLog(), p.mixerGRPC, p.upHTTP, p.upGRPC)
	if err := os.WriteFile(proxyCfg, proxyYAML, 0o644); err != nil {
		return err
	}
	steps := []struct {
		name  string
		args  []string
		ready func(context.Context) error
	}{
		{"upstream", []string{"sample-upstream", "--http", addr(p.upHTTP), "--grpc", addr(p.upGRPC)}, func(ctx context.Context) error { return d.waitTCP(ctx, p.upGRPC) }},
		{"mixer", []string{"mixer", "--config", mixerCfg}, func(ctx context.Context) error {
			return d.waitHTTP(ctx, fmt.Sprintf("http://%s/readyz", addr(p.mixerMon)))
		}},
		{"proxy", []string{"proxy", "--config", proxyCfg}, func(ctx context.Context) error { return d.waitHTTP(ctx, fmt.Sprintf("http://%s/ready", addr(p.admin))) }},
	}
	for _, s := range steps {
		proc, err := d.spawn(s.name, s.args...)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.ready(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s did not become ready: %w\n%s", s.name, err, tail(proc.log, 15))
		}
	}
	fmt.Fprintf(d.stdout, "Remora demo: three processes on loopback (working directory %s)\n", d.dir)
	fmt.Fprintf(d.stdout, "  sample upstream  HTTP %s, gRPC %s\n", addr(p.upHTTP), addr(p.upGRPC))
	fmt.Fprintf(d.stdout, "  remora mixer     gRPC %s, metrics http://%s/metrics\n", addr(p.mixerGRPC), addr(p.mixerMon))
	fmt.Fprintf(d.stdout, "  remora proxy     http://%s/ (sidecar of reviews-v1), admin http://%s/\n\n", addr(p.sidecar), addr(p.admin))
	return nil
}

func (d *demo) accessLog() string { return filepath.Join(d.dir, "access.log") }

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// spawn starts `remora <args>` with its output in <dir>/<name>.log.
func (d *demo) spawn(name string, args ...string) (*demoProc, error) {
	logPath := filepath.Join(d.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(d.exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &demoProc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	d.procs = append(d.procs, p)
	return p, nil
}

// anyExited is closed when any demo process exits.
func (d *demo) anyExited() <-chan struct{} {
	ch := make(chan struct{})
	for _, p := range d.procs {
		go func() {
			<-p.done
			select {
			case <-ch:
			default:
				fmt.Fprintf(d.stdout, "%s exited: %v\n%s\n", p.name, p.err, tail(p.log, 15))
				close(ch)
			}
		}()
	}
	return ch
}

// stopAll stops the processes in reverse order (the sidecar first, so it
// delivers its queued reports to a running mixer): SIGTERM, then SIGKILL
// after 10 seconds.
func (d *demo) stopAll() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

func (d *demo) waitTCP(ctx context.Context, port int) error {
	return poll(ctx, func() error {
		c, err := net.DialTimeout("tcp", addr(port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func (d *demo) waitHTTP(ctx context.Context, url string) error {
	return poll(ctx, func() error {
		resp, err := d.client.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// poll retries f every 50ms until it succeeds or ctx ends.
func poll(ctx context.Context, f func() error) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// outcome is one line of the traffic summary.
type outcome struct {
	label string
	codes map[int]int
}

// traffic sends the demo's requests and prints the summary.
func (d *demo) traffic(ctx context.Context) error {
	base := "http://" + addr(d.ports.sidecar)
	outcomes := map[string]*outcome{}
	order := []string{"allowed", "denied by policy", "quota-limited", "no route", "other"}
	for _, k := range order {
		outcomes[k] = &outcome{label: k, codes: map[int]int{}}
	}
	total := 0
	send := func(method, path string, hdr map[string]string) error {
		req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "remora-demo")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := d.client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		total++
		kind := "other"
		switch {
		case resp.StatusCode < 300:
			kind = "allowed"
		case resp.StatusCode == 403 || resp.StatusCode == 405:
			kind = "denied by policy"
		case resp.StatusCode == 429:
			kind = "quota-limited"
		case resp.StatusCode == 404:
			kind = "no route"
		}
		outcomes[kind].codes[resp.StatusCode]++
		return nil
	}
	type req struct {
		n            int
		method, path string
		hdr          map[string]string
	}
	for _, r := range []req{
		{20, "GET", "/reviews/1", nil},                                       // allowed; answered from the check cache after the first
		{5, "GET", "/reviews/2", map[string]string{"x-user-role": "viewer"}}, // allowed
		{4, "GET", "/admin/settings", nil},                                   // 403: the policy wants the admin role
		{2, "GET", "/admin/settings", map[string]string{"x-user-role": "admin"}},
		{3, "DELETE", "/reviews/1", nil}, // 405: the policy refuses DELETE
		{8, "GET", "/ratings/1", nil},    // 5 per 10s, then 429
		{2, "GET", "/details/1", nil},    // no route: 404 NR
	} {
		for range r.n {
			if err := send(r.method, r.path, r.hdr); err != nil {
				return err
			}
		}
	}
	grpcStatus, err := d.grpcCall(ctx)
	if err != nil {
		return fmt.Errorf("gRPC call through the sidecar: %w", err)
	}
	total++

	fmt.Fprintf(d.stdout, "Traffic: %d requests through the sidecar\n", total)
	for _, k := range order {
		o := outcomes[k]
		if len(o.codes) == 0 {
			continue
		}
		n, parts := 0, []string{}
		codes := make([]int, 0, len(o.codes))
		for c := range o.codes {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		for _, c := range codes {
			n += o.codes[c]
			parts = append(parts, fmt.Sprintf("%d×%d", o.codes[c], c))
		}
		fmt.Fprintf(d.stdout, "  %-17s %3d  (%s)\n", k, n, strings.Join(parts, ", "))
	}
	fmt.Fprintf(d.stdout, "  %-17s %3d  (grpc.health.v1.Health/Check: %s)\n", "gRPC call", 1, grpcStatus)

	// Reports are batched (200ms here): wait until the mixer has them all.
	var records float64
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	poll(rctx, func() error {
		m, err := d.scrape(fmt.Sprintf("http://%s/metrics", addr(d.ports.mixerMon)))
		if err != nil {
			return err
		}
		records = sumMetric(m, "remora_mixer_report_records_total")
		if int(records) < total {
			return fmt.Errorf("%v of %d report records", records, total)
		}
		return nil
	})
	pm, err := d.scrape(fmt.Sprintf("http://%s/stats/prometheus", addr(d.ports.admin)))
	if err != nil {
		return err
	}
	hits, misses := sumMetric(pm, "remora_mixer_client_check_cache_hits_total"), sumMetric(pm, "remora_mixer_client_check_cache_misses_total")
	if hits+misses > 0 {
		fmt.Fprintf(d.stdout, "\nCheck cache: %.0f of %.0f checks answered by the sidecar's cache (%.0f%%); the rest went to the mixer\n",
			hits, hits+misses, 100*hits/(hits+misses))
	}
	fmt.Fprintf(d.stdout, "Reports: the mixer received %.0f report records\n", records)

	mm, err := d.scrape(fmt.Sprintf("http://%s/metrics", addr(d.ports.mixerMon)))
	if err != nil {
		return err
	}
	fmt.Fprintln(d.stdout, "\nIstio metrics on the mixer (istio_requests_total, selected labels):")
	for _, l := range istioExcerpt(mm) {
		fmt.Fprintln(d.stdout, "  "+l)
	}
	// The file sink flushes every 100ms.
	lines := 0
	poll(rctx, func() error {
		lines = countLines(d.accessLog())
		if lines < total {
			return errors.New("access log incomplete")
		}
		return nil
	})
	fmt.Fprintf(d.stdout, "\nAccess log %s (%d lines), the last few:\n%s\n", d.accessLog(), lines, indent(tail(d.accessLog(), 4)))
	fmt.Fprintf(d.stdout, "\nLook at: sidecar admin http://%s/ (stats, clusters, config_dump), mixer metrics http://%s/metrics\n",
		addr(d.ports.admin), addr(d.ports.mixerMon))
	return nil
}

// grpcCall calls the upstream's health service through the sidecar (h2c).
func (d *demo) grpcCall(ctx context.Context) (string, error) {
	conn, err := grpc.NewClient(addr(d.ports.sidecar), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{Service: "reviews"})
	if err != nil {
		return "", err
	}
	return resp.GetStatus().String(), nil
}

func (d *demo) scrape(url string) (string, error) {
	resp, err := d.client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// sumMetric adds up every sample of the named metric in an exposition.
func sumMetric(text, name string) float64 {
	var sum float64
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, name) || (len(l) > len(name) && l[len(name)] != '{' && l[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// istioExcerpt renders istio_requests_total with a few telling labels.
func istioExcerpt(text string) []string {
	keep := []string{"reporter", "destination_workload", "request_protocol", "response_code", "response_flags"}
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "istio_requests_total{") {
			continue
		}
		labels := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(l, -1) {
			labels[m[1]] = m[2]
		}
		var parts []string
		for _, k := range keep {
			parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
		}
		f := strings.Fields(l)
		out = append(out, fmt.Sprintf("istio_requests_total{%s} %s", strings.Join(parts, ","), f[len(f)-1]))
	}
	sort.Strings(out)
	return out
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		n++
	}
	return n
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
