package capture_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	_ "github.com/remora-mesh/remora/accesslog"
	"github.com/remora-mesh/remora/internal/capture"
	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/server"
)

// The capture path end to end, with real iptables rules in real network
// namespaces:
//
//	peer namespace (10.99.0.2, fd99::2)  pod namespace (10.99.0.1, fd99::1): rules, proxy, app
//	  upstream :8080 (tcp), :9090 (http) ◀─ proxy 15001 ◀─ REDIRECT ◀─ client (uid 1337)
//	  client ──▶ 10.99.0.1:8081 ─▶ PREROUTING REDIRECT ─▶ proxy 15006 ─▶ app :8081 (from 127.0.0.6)
//
// TestCaptureInNetns (root only) creates both namespaces and a veth pair,
// then runs TestCaptureNetnsChild in a child process inside the pod
// namespace (`ip netns exec`), so that every socket of the proxy is there;
// the child reaches the peer namespace from threads moved with setns, and
// opens the client's connections from a thread whose uid and gid are 1337
// (not the proxy's), so that the OUTPUT rules apply to them.

const (
	childEnv = "REMORA_CAPTURE_TEST_PEER_NS" // set in the child: the peer namespace's name
	podIP    = "10.99.0.1"
	peerIP   = "10.99.0.2"
	podIP6   = "fd99::1"
	peerIP6  = "fd99::2"
	appUID   = 1337
)

func TestCaptureInNetns(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("running as the namespace child")
	}
	if os.Geteuid() != 0 {
		t.Skip("capture test needs root and iptables (network namespaces, nat rules)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore", "iptables-save", "ip6tables", "ip6tables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("capture test needs root and iptables: %s not found", tool)
		}
	}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	pod := "remora-test-" + hex.EncodeToString(rb[:])
	peer := pod + "-peer"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{pod, peer} {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("capture test needs network namespaces: ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	const podMAC, peerMAC = "02:00:00:00:99:01", "02:00:00:00:99:02"
	ip("-n", pod, "link", "add", "v0", "address", podMAC, "type", "veth", "peer", "name", "v1", "address", peerMAC, "netns", peer)
	ip("-n", pod, "addr", "add", podIP+"/24", "dev", "v0")
	ip("-n", peer, "addr", "add", peerIP+"/24", "dev", "v1")
	ip("-n", pod, "-6", "addr", "add", podIP6+"/64", "dev", "v0", "nodad")
	ip("-n", peer, "-6", "addr", "add", peerIP6+"/64", "dev", "v1", "nodad")
	for _, ns := range []string{pod, peer} {
		ip("-n", ns, "link", "set", "lo", "up")
	}
	ip("-n", pod, "link", "set", "v0", "up")
	ip("-n", peer, "link", "set", "v1", "up")
	// Static neighbours: the first IPv6 packet need not wait for discovery.
	ip("-n", pod, "-6", "neigh", "replace", peerIP6, "lladdr", peerMAC, "dev", "v0", "nud", "permanent")
	ip("-n", peer, "-6", "neigh", "replace", podIP6, "lladdr", podMAC, "dev", "v1", "nud", "permanent")

	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", pod, os.Args[0], "-test.run=^TestCaptureNetnsChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+peer)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCaptureNetnsChild") {
		t.Fatalf("child in namespace %s: %v\n%s", pod, err, out)
	}
	t.Logf("child:\n%s", out)
}

// TestCaptureNetnsChild is the part of TestCaptureInNetns that runs in the
// pod namespace; it does nothing elsewhere.
func TestCaptureNetnsChild(t *testing.T) {
	peerNS := os.Getenv(childEnv)
	if peerNS == "" {
		t.Skip("only runs inside TestCaptureInNetns's namespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	peerPath := filepath.Join("/var/run/netns", peerNS)

	// The rules, installed twice (the second run replaces the first).
	cfg := capture.NewConfig()
	cfg.ProxyUIDs, cfg.ProxyGIDs = []uint32{0}, []uint32{0} // the proxy is this process
	cfg.IPv6 = true
	for range 2 {
		if err := capture.Run(ctx, capture.Plan(&cfg, capture.Restore), nil); err != nil {
			t.Fatal(err)
		}
	}
	save := func() string {
		out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables-save: %v: %s", err, out)
		}
		return string(out)
	}
	if rules := save(); strings.Count(rules, "-A OUTPUT -p tcp -j REMORA_OUTPUT") != 1 || strings.Count(rules, "-A PREROUTING -p tcp -j REMORA_INBOUND") != 1 {
		t.Fatalf("after two installs, want one jump each:\n%s", rules)
	}

	// Upstreams in the peer namespace; the app in the pod namespace.
	var tcpUp, tcpUp6, httpUp net.Listener
	inNetns(t, peerPath, func() error {
		var err error
		if tcpUp, err = net.Listen("tcp", peerIP+":8080"); err != nil {
			return err
		}
		if tcpUp6, err = net.Listen("tcp", "["+peerIP6+"]:8080"); err != nil {
			return err
		}
		httpUp, err = net.Listen("tcp", peerIP+":9090")
		return err
	})
	defer tcpUp.Close()
	defer tcpUp6.Close()
	go serveWhoAmI(tcpUp)
	go serveWhoAmI(tcpUp6)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "peer http saw %s", r.RemoteAddr)
	})}
	go hs.Serve(httpUp)
	defer hs.Close()
	app := listen(t, "0.0.0.0:8081")
	go serveWhoAmI(app)
	excluded := listen(t, "0.0.0.0:15020") // an excluded inbound port
	go serveWhoAmI(excluded)
	local := listen(t, "127.0.0.1:8082")
	go serveWhoAmI(local)
	app8083 := listen(t, "127.0.0.1:8083") // reachable only through the proxy's chain
	go serveWhoAmI(app8083)

	// The proxy.
	logPath := filepath.Join(t.TempDir(), "access.log")
	pcfg, err := config.Parse([]byte(strings.ReplaceAll(proxyConfig, "LOG", logPath)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(pcfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}

	t.Run("outbound tcp passthrough", func(t *testing.T) {
		var c net.Conn
		asUser(t, appUID, func() (err error) { c, err = net.DialTimeout("tcp", peerIP+":8080", 5*time.Second); return })
		defer c.Close()
		saw := whoAmI(t, c)
		if saw == c.LocalAddr().String() {
			t.Fatalf("the upstream saw the client itself (%s): not redirected", saw)
		}
		c.Close() // the proxied connection ends, and is logged, when both sides closed
		waitLog(t, logPath, fmt.Sprintf("out %s:8080 %s:8080 %s", peerIP, peerIP, saw))
	})
	t.Run("outbound tcp passthrough over IPv6", func(t *testing.T) {
		var c net.Conn
		asUser(t, appUID, func() (err error) { c, err = net.DialTimeout("tcp", "["+peerIP6+"]:8080", 5*time.Second); return })
		defer c.Close()
		saw := whoAmI(t, c)
		if saw == c.LocalAddr().String() {
			t.Fatalf("the upstream saw the client itself (%s): not redirected", saw)
		}
		c.Close()
		waitLog(t, logPath, fmt.Sprintf("out [%s]:8080 [%s]:8080 %s", peerIP6, peerIP6, saw))
	})
	t.Run("outbound http handed to bind_to_port false listener", func(t *testing.T) {
		tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			asUser(t, appUID, func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + peerIP + ":9090/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "peer http saw "+podIP) {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		waitLog(t, logPath, fmt.Sprintf("http %s:9090 %s:9090 200", peerIP, peerIP))
		if n := counter(t, s, "remora_listener_handoff_total", "target", "outbound_9090"); n != 1 {
			t.Fatalf("handoff_total{target=outbound_9090} = %v, want 1", n)
		}
	})
	t.Run("loopback not captured", func(t *testing.T) {
		var c net.Conn
		asUser(t, appUID, func() (err error) { c, err = net.DialTimeout("tcp", "127.0.0.1:8082", 5*time.Second); return })
		defer c.Close()
		if saw := whoAmI(t, c); saw != c.LocalAddr().String() {
			t.Fatalf("loopback connection went through %s", saw)
		}
	})
	t.Run("inbound passthrough from 127.0.0.6", func(t *testing.T) {
		var c net.Conn
		inNetns(t, peerPath, func() (err error) { c, err = net.DialTimeout("tcp", podIP+":8081", 5*time.Second); return })
		defer c.Close()
		defer func() {
			if t.Failed() {
				data, _ := os.ReadFile(logPath)
				mfs, _ := s.Registry().Gather()
				for _, mf := range mfs {
					if strings.Contains(mf.GetName(), "listener") || strings.Contains(mf.GetName(), "tcp") || strings.Contains(mf.GetName(), "upstream_cx") {
						t.Logf("%s", mf.String())
					}
				}
				t.Logf("access log:\n%s", data)
			}
		}()
		saw := whoAmI(t, c)
		if !strings.HasPrefix(saw, "127.0.0.6:") {
			t.Fatalf("the app saw %s, want the inbound passthrough's 127.0.0.6", saw)
		}
		c.Close()
		waitLog(t, logPath, fmt.Sprintf("in %s:8081 %s:8081 %s", podIP, podIP, saw))
	})
	t.Run("inbound chain chosen by original destination port", func(t *testing.T) {
		var c net.Conn
		inNetns(t, peerPath, func() (err error) { c, err = net.DialTimeout("tcp", podIP+":8083", 5*time.Second); return })
		defer c.Close()
		if saw := whoAmI(t, c); !strings.HasPrefix(saw, "127.0.0.1:") {
			t.Fatalf("the app on 127.0.0.1:8083 saw %s, want the proxy's loopback connection", saw)
		}
		c.Close()
		waitLog(t, logPath, fmt.Sprintf("in8083 %s:8083 127.0.0.1:8083", podIP))
	})
	t.Run("excluded inbound port", func(t *testing.T) {
		var c net.Conn
		inNetns(t, peerPath, func() (err error) { c, err = net.DialTimeout("tcp", podIP+":15020", 5*time.Second); return })
		defer c.Close()
		if saw := whoAmI(t, c); saw != c.LocalAddr().String() {
			t.Fatalf("port 15020 went through %s, want the client %s", saw, c.LocalAddr())
		}
	})
	if n := counter(t, s, "remora_listener_original_dst_total", "listener", "virtualOutbound"); n != 3 {
		t.Fatalf("original_dst_total{virtualOutbound, recovered} = %v, want 3", n)
	}

	// Cleanup twice: the second finds nothing and still succeeds.
	for range 2 {
		if err := capture.Run(ctx, capture.Cleanup(true), nil); err != nil {
			t.Fatal(err)
		}
	}
	if rules := save(); strings.Contains(rules, "REMORA") {
		t.Fatalf("rules left after cleanup:\n%s", rules)
	}
	if out, _ := exec.CommandContext(ctx, "ip6tables-save", "-t", "nat").CombinedOutput(); strings.Contains(string(out), "REMORA") {
		t.Fatalf("IPv6 rules left after cleanup:\n%s", out)
	}
}

const proxyConfig = `
admin: {address: "-"}
listeners:
- name: virtualOutbound
  address: "[::]:15001"  # dual stack: IPv4 connections arrive v4-mapped
  use_original_dst: true
  filter_chains:
  - tcp_proxy:
      stat_prefix: passthrough
      cluster: PassthroughCluster
      access_log: [{type: file, config: {path: LOG, flush_bytes: 1, format: "out %DOWNSTREAM_LOCAL_ADDRESS% %UPSTREAM_HOST% %UPSTREAM_LOCAL_ADDRESS%\n"}}]
- name: outbound_9090
  address: 0.0.0.0:9090
  bind_to_port: false
  filter_chains:
  - http_connection_manager:
      stat_prefix: outbound_9090
      access_log: [{type: file, config: {path: LOG, flush_bytes: 1, format: "http %DOWNSTREAM_LOCAL_ADDRESS% %UPSTREAM_HOST% %RESPONSE_CODE%\n"}}]
      route_config:
        virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: PassthroughCluster}}]}]
- name: virtualInbound
  address: 0.0.0.0:15006
  direction: inbound
  listener_filters: [{name: original_dst}]
  filter_chains:
  - filter_chain_match: {destination_port: 8083}   # matched on the original destination's port
    tcp_proxy:
      stat_prefix: inbound_8083
      cluster: app8083
      access_log: [{type: file, config: {path: LOG, flush_bytes: 1, format: "in8083 %DOWNSTREAM_LOCAL_ADDRESS% %UPSTREAM_HOST%\n"}}]
  - tcp_proxy:
      stat_prefix: inbound_passthrough
      cluster: InboundPassthroughCluster
      access_log: [{type: file, config: {path: LOG, flush_bytes: 1, format: "in %DOWNSTREAM_LOCAL_ADDRESS% %UPSTREAM_HOST% %UPSTREAM_LOCAL_ADDRESS%\n"}}]
clusters:
- {name: PassthroughCluster, type: ORIGINAL_DST}
- {name: InboundPassthroughCluster, type: ORIGINAL_DST, source_address: 127.0.0.6}
- {name: app8083, endpoints: [{address: 127.0.0.1:8083}]}
`

// inNetns runs fn on a thread moved into the network namespace at path;
// sockets fn creates stay in that namespace. The thread is discarded
// afterwards (its goroutine ends locked).
func inNetns(t *testing.T, path string, fn func() error) {
	t.Helper()
	onThread(t, func() error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns %s: %w", path, err)
		}
		return fn()
	})
}

// asUser runs fn on a thread whose uid and gid (only that thread's) are
// id: sockets fn creates are owned by id for iptables' owner match.
func asUser(t *testing.T, id uintptr, fn func() error) {
	t.Helper()
	onThread(t, func() error {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, id, id, id); e != 0 {
			return fmt.Errorf("setresgid: %w", e)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, id, id, id); e != 0 {
			return fmt.Errorf("setresuid: %w", e)
		}
		return fn()
	})
}

// onThread runs fn on a locked OS thread that dies with its goroutine.
func onThread(t *testing.T, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveWhoAmI answers each connection with the remote address it sees.
func serveWhoAmI(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s\n", c.RemoteAddr())
		c.Close()
	}
}

func whoAmI(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v", c.RemoteAddr(), err)
	}
	return strings.TrimSpace(line)
}

// waitLog waits until the access log holds line (written when the
// connection or stream ends).
func waitLog(t *testing.T, path, line string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		data, _ := os.ReadFile(path)
		for _, l := range strings.Split(string(data), "\n") {
			if l == line {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("access log has no line %q:\n%s", line, data)
		case <-tick.C:
		}
	}
}

// counter finds the sample of a counter whose label has value.
func counter(t *testing.T, s *server.Server, name, label, value string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := false
			recovered := name != "remora_listener_original_dst_total"
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
				if lp.GetName() == "result" && lp.GetValue() == "recovered" {
					recovered = true
				}
			}
			if match && recovered {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
