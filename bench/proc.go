package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs is the cleanup list: every process the harness starts is put in its
// own process group and registered here, and stopAll ends every group that
// is still alive (SIGTERM, then SIGKILL after a grace period). It is safe for
// concurrent use, so the signal handler may call stopAll while a run starts
// processes.
type procs struct {
	mu      sync.Mutex
	live    map[*proc]struct{}
	stopped bool
}

// proc is one started process (and its process group).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
	out  *tailBuffer   // the last bytes of stdout and stderr
	log  string        // the full output's file
}

func newProcs() *procs { return &procs{live: map[*proc]struct{}{}} }

// errStopped is returned by start once stopAll has run.
var errStopped = errors.New("bench: stopping, no new processes")

// start runs argv in its own process group with output going to logPath
// (and the last few KiB kept in memory for error messages). The process gets
// SIGKILL if the harness dies (Pdeathsig), and is registered for stopAll.
func (ps *procs) start(name, logPath string, env []string, argv ...string) (*proc, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopped {
		return nil, errStopped
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	p := &proc{name: name, done: make(chan struct{}), out: &tailBuffer{max: 8 << 10}, log: logPath}
	w := &teeWriter{f: f, t: p.out}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	p.cmd = cmd
	ps.live[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// pid is the process's id, which is also its process group's id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// why describes how an exited process ended, with its last output line.
func (p *proc) why() string {
	out := strings.TrimSpace(p.out.String())
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		// The last lines carry the reason; keep at most three.
		lines := strings.Split(out, "\n")
		if len(lines) > 3 {
			lines = lines[len(lines)-3:]
		}
		out = strings.Join(lines, " | ")
	}
	if out == "" {
		out = "(no output)"
	}
	return fmt.Sprintf("%v: %s", p.err, out)
}

// stop ends the process group: SIGTERM, and SIGKILL if it is still alive
// after grace. It waits for the process to be reaped.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		// The leader is gone; members of its group may not be.
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL) // stragglers in the group (nginx workers)
}

// wait waits for the process to exit or ctx to end; on ctx's end the
// process group is stopped.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.stop(2 * time.Second)
		return ctx.Err()
	}
}

// stopAll stops every live process group and refuses new ones.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	ps.stopped = true
	list := make([]*proc, 0, len(ps.live))
	for p := range ps.live {
		list = append(list, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(3 * time.Second) }()
	}
	wg.Wait()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

type teeWriter struct {
	mu sync.Mutex
	f  *os.File
	t  *tailBuffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Write(p)
	return w.f.Write(p)
}

// freePort returns a loopback address with a port that was free a moment
// ago (the kernel picks it; the listener is closed before the peer binds).
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// waitReady polls until check succeeds, the process exits or timeout
// passes. p may be nil.
func waitReady(ctx context.Context, p *proc, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if p != nil && p.exited() {
			return fmt.Errorf("exited: %s", p.why())
		}
		if last = check(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tcpReady succeeds when addr accepts a connection.
func tcpReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// httpReady succeeds when GET url answers want.
func httpReady(url string, header http.Header, want int) func() error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if resp.StatusCode != want {
			return fmt.Errorf("GET %s: %d, want %d: %s", url, resp.StatusCode, want, strings.TrimSpace(b.String()))
		}
		return nil
	}
}

// usage is one reading of a process group's resources.
type usage struct {
	cpu   float64 // user+system CPU seconds of every process in the group
	rss   int64   // sum of VmRSS, bytes
	hwm   int64   // sum of VmHWM (each process's peak RSS), bytes
	procs int
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's utime and stime; it
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// readUsage reads /proc for every process whose process group is pgid.
func readUsage(pgid int) (usage, error) {
	var u usage
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return u, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// contain spaces: state(3) ppid(4) pgrp(5) ... utime(14) stime(15).
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 {
			continue
		}
		pgrp, _ := strconv.Atoi(f[2])
		if pgrp != pgid {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		u.cpu += (ut + st) / clockTick
		u.procs++
		status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			switch {
			case strings.HasPrefix(line, "VmRSS:"):
				u.rss += kbField(line)
			case strings.HasPrefix(line, "VmHWM:"):
				u.hwm += kbField(line)
			}
		}
	}
	if u.procs == 0 {
		return u, fmt.Errorf("bench: no process in group %d", pgid)
	}
	return u, nil
}

func kbField(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n << 10
}

// cpuAccount is one reading of the machine's busy CPU time and of the
// harness's own, with every child it has waited for, so that a run can
// tell how much CPU other programs took while it measured.
type cpuAccount struct {
	machine float64 // CPU seconds all CPUs spent busy (user, nice, system, irq, softirq)
	steal   float64 // CPU seconds the hypervisor gave to other guests
	own     float64 // CPU seconds of the harness and its reaped children
}

func readCPUAccount() (cpuAccount, error) {
	var a cpuAccount
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return a, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return a, fmt.Errorf("bench: /proc/stat: unexpected first line %q", line)
	}
	var t [8]float64
	for i := range t {
		if t[i], err = strconv.ParseFloat(f[i+1], 64); err != nil {
			return a, fmt.Errorf("bench: /proc/stat: field %d: %w", i+1, err)
		}
	}
	// user nice system idle iowait irq softirq steal
	a.machine = (t[0] + t[1] + t[2] + t[5] + t[6]) / clockTick
	a.steal = t[7] / clockTick
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			return a, err
		}
		a.own += tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	return a, nil
}

func tvSeconds(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

// foreignCPU is what other programs took between two readings: CPU
// seconds, and the average number of cores over wall.
type foreignCPU struct {
	seconds, cores, steal float64
	ok                    bool
}

func (a cpuAccount) since(b cpuAccount, wall time.Duration) foreignCPU {
	s := (a.machine - b.machine) - (a.own - b.own)
	if s < 0 {
		s = 0 // tick rounding
	}
	return foreignCPU{seconds: s, cores: s / wall.Seconds(), steal: a.steal - b.steal, ok: wall > 0}
}
