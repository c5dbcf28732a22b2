//lint:file-ignore SA1019 x/net/http2's Transport is the HTTP/2 client this package is specified to use.

package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"
)

// healthChecker runs a cluster's active health check: one session (a
// goroutine) per host, started when the host joins the cluster and
// stopped when it leaves or the cluster closes.
type healthChecker struct {
	c   *Cluster
	cfg HealthCheckConfig

	// HTTP checks.
	client    *http.Client
	closeIdle func()
	scheme    string
	// TCP checks.
	send    []byte
	receive [][]byte
}

// hcSession is one host's checking goroutine.
type hcSession struct {
	cancel context.CancelFunc
	first  chan struct{} // closed once the first check's result is in
}

// hcReadLimit bounds the response body a health check reads (and drains
// so that the connection can be reused).
const hcReadLimit = 64 << 10

func newHealthChecker(c *Cluster, cfg HealthCheckConfig) *healthChecker {
	hc := &healthChecker{c: c, cfg: cfg}
	if cfg.TCP != nil {
		hc.send, _ = hex.DecodeString(cfg.TCP.Send) // validated
		for _, r := range cfg.TCP.Receive {
			b, _ := hex.DecodeString(r)
			hc.receive = append(hc.receive, b)
		}
		return hc
	}
	hc.scheme = "http"
	if c.cfg.TLS != nil {
		hc.scheme = "https"
	}
	// The transports dial through the cluster's dialer and TLS settings;
	// the host to dial is the request URL's host (the host's address).
	dial := func(ctx context.Context, addr string, alpn []string) (net.Conn, error) {
		h := c.hostByAddr(addr)
		if h == nil {
			return nil, fmt.Errorf("upstream: health check: %s is no longer a host of cluster %q", addr, c.name)
		}
		ctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
		defer cancel()
		return c.dialHost(ctx, h, alpn)
	}
	// A connection kept between checks closes when no check used it for
	// two of the longest intervals (a host DNS removed stops being checked).
	idle := 2*max(cfg.Interval.D(), cfg.NoTrafficInterval.D()) + cfg.IntervalJitter.D() + cfg.Timeout.D()
	var rt http.RoundTripper
	if c.protocol == ProtocolHTTP2 {
		t := &http2.Transport{
			AllowHTTP:          true,
			DisableCompression: true,
			IdleConnTimeout:    idle,
			DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) {
				return dial(ctx, addr, []string{alpnH2})
			},
		}
		rt, hc.closeIdle = t, t.CloseIdleConnections
	} else {
		d := func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, addr, []string{alpnHTTP1})
		}
		t := &http.Transport{
			DialContext:         d,
			DialTLSContext:      d,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     idle,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		}
		rt, hc.closeIdle = t, t.CloseIdleConnections
	}
	hc.client = &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return hc
}

// hostByAddr returns the current host with address addr, or nil.
func (c *Cluster) hostByAddr(addr string) *Host {
	for _, h := range c.Hosts() {
		if h.addr == addr {
			return h
		}
	}
	return nil
}

// startHealthCheckLocked starts h's checking session (c.mu held).
func (c *Cluster) startHealthCheckLocked(h *Host) {
	if c.hc == nil || h.hc != nil || c.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &hcSession{cancel: cancel, first: make(chan struct{})}
	h.hc = s
	c.hcWG.Add(1)
	go c.hc.run(ctx, h, s)
}

// stopHealthCheckLocked stops h's session without waiting for it (c.mu
// held; the session may be waiting for c.mu).
func (c *Cluster) stopHealthCheckLocked(h *Host) {
	if h.hc != nil {
		h.hc.cancel()
		h.hc = nil
	}
}

// awaitFirstHealthChecks waits until every current host's first check
// finished or ctx ends, so that a cluster starts with checked hosts (as
// Envoy's cluster warming does).
func (c *Cluster) awaitFirstHealthChecks(ctx context.Context) {
	if c.hc == nil {
		return
	}
	c.mu.Lock()
	var firsts []chan struct{}
	for _, h := range c.Hosts() {
		if h.hc != nil {
			firsts = append(firsts, h.hc.first)
		}
	}
	c.mu.Unlock()
	for _, ch := range firsts {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// run checks h at once, then every interval (no_traffic_interval while the
// cluster has carried no traffic) plus jitter, until ctx ends.
func (hc *healthChecker) run(ctx context.Context, h *Host, s *hcSession) {
	defer hc.c.hcWG.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			if first {
				close(s.first)
			}
			return
		case <-t.C:
		}
		ok, network, err := hc.check(ctx, h)
		if ctx.Err() != nil { // stopped mid-check: no verdict
			continue
		}
		hc.c.healthCheckResult(h, ok, network, err)
		if first {
			close(s.first)
			first = false
		}
		t.Reset(hc.nextInterval())
	}
}

func (hc *healthChecker) nextInterval() time.Duration {
	d := hc.cfg.Interval.D()
	st := &hc.c.stats
	if st.get(statRqTotal) == 0 && st.get(statCxTotal) == 0 {
		d = hc.cfg.NoTrafficInterval.D()
	}
	if j := hc.cfg.IntervalJitter.D(); j > 0 {
		d += rand.N(j)
	}
	return d
}

// check probes h once within the timeout. network reports a failure to
// connect, a reset or a timeout, as opposed to a wrong answer.
func (hc *healthChecker) check(ctx context.Context, h *Host) (ok, network bool, err error) {
	hc.c.stats.inc(statHCAttempt)
	ctx, cancel := context.WithTimeout(ctx, hc.cfg.Timeout.D())
	defer cancel()
	if hc.cfg.TCP != nil {
		return hc.checkTCP(ctx, h)
	}
	return hc.checkHTTP(ctx, h)
}

func (hc *healthChecker) checkHTTP(ctx context.Context, h *Host) (ok, network bool, err error) {
	cfg := hc.cfg.HTTP
	req := &http.Request{
		Method: http.MethodGet,
		URL:    &url.URL{Scheme: hc.scheme, Host: h.addr, Opaque: cfg.Path},
		Host:   cfg.Host,
		Header: http.Header{"User-Agent": {"Remora/HC"}},
	}
	resp, err := hc.client.Do(req.WithContext(ctx))
	if err != nil {
		return false, true, err
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, hcReadLimit))
	resp.Body.Close()
	if err != nil {
		return false, true, err
	}
	for _, r := range cfg.ExpectedStatuses {
		if resp.StatusCode >= int(r.Start) && resp.StatusCode < int(r.End) {
			return true, false, nil
		}
	}
	return false, false, fmt.Errorf("upstream: health check: status %d", resp.StatusCode)
}

func (hc *healthChecker) checkTCP(ctx context.Context, h *Host) (ok, network bool, err error) {
	nc, err := hc.c.dialHost(ctx, h, nil)
	if err != nil {
		return false, true, err
	}
	defer nc.Close()
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	if len(hc.send) > 0 {
		if _, err := nc.Write(hc.send); err != nil {
			return false, true, err
		}
	}
	if len(hc.receive) == 0 {
		return true, false, nil
	}
	// Each block must appear, in order; bytes between them are skipped.
	var buf []byte
	next := 0
	chunk := make([]byte, 1024)
	for next < len(hc.receive) {
		n, err := nc.Read(chunk)
		buf = append(buf, chunk[:n]...)
		for next < len(hc.receive) {
			i := bytes.Index(buf, hc.receive[next])
			if i < 0 {
				break
			}
			buf = buf[i+len(hc.receive[next]):]
			next++
		}
		if next == len(hc.receive) {
			return true, false, nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return false, false, errors.New("upstream: health check: connection closed before the expected bytes")
			}
			return false, true, err
		}
		if len(buf) > hcReadLimit {
			return false, false, errors.New("upstream: health check: expected bytes not found")
		}
	}
	return true, false, nil
}

// healthCheckResult applies one check's verdict to h: a pending host
// takes its first result at once; a healthy one fails after
// unhealthy_threshold failures in a row, a failed one returns after
// healthy_threshold successes in a row.
func (c *Cluster) healthCheckResult(h *Host, ok, network bool, err error) {
	if ok {
		c.stats.inc(statHCSuccess)
	} else {
		c.stats.inc(statHCFailure)
		if network {
			c.stats.inc(statHCNetworkFailure)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.byAddr[h.addr] != h {
		return
	}
	pending := h.hcPending.Load()
	h.hcPending.Store(false)
	changed, unejected := false, false
	if ok {
		h.hcFail = 0
		if od := c.outlier; od != nil && od.hcUneject && h.ejected.Load() {
			// Envoy's successful_active_health_check_uneject_host.
			h.ejected.Store(false)
			unejected, changed = true, true
			c.log.Debug("host returned by a passing health check", zapHost(h))
		}
		if h.hcFailed.Load() {
			h.hcOK++
			if pending || h.hcOK >= c.hc.cfg.HealthyThreshold {
				h.hcFailed.Store(false)
				h.hcOK = 0
				changed = true
				c.log.Debug("host passes health checks", zapHost(h))
			}
		}
	} else {
		h.hcOK = 0
		if !h.hcFailed.Load() {
			h.hcFail++
			if h.hcFail >= c.hc.cfg.UnhealthyThreshold {
				h.hcFailed.Store(true)
				h.hcFail = 0
				changed = true
				c.log.Debug("host fails health checks", zapHost(h), zap.Error(err))
			}
		}
	}
	if changed {
		c.rebuildLocked(c.Hosts())
	}
	if unejected { // counted once the host is back in the balancer
		c.stats.dec(statOutlierEjectionsActive)
	}
}

// warm waits, at most one health-check timeout plus connect_timeout, for
// the first check of every host, so that a cluster starts with checked
// hosts as Envoy's cluster warming does. Without health checks it returns
// at once.
func (c *Cluster) warm() {
	if c.hc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.hc.cfg.Timeout.D()+c.connectTimeout)
	defer cancel()
	c.awaitFirstHealthChecks(ctx)
}
