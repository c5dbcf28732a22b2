package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/remora-mesh/remora/internal/sockio"
	"github.com/remora-mesh/remora/internal/tlsconfig"
	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/hcm"
	"github.com/remora-mesh/remora/proxy/tcpproxy"
	"go.uber.org/zap"
)

// listenerMetrics are Envoy's listener stats, labelled by listener name.
type listenerMetrics struct {
	cxTotal    *prometheus.CounterVec
	cxActive   *prometheus.GaugeVec
	cxOverflow *prometheus.CounterVec
	noChain    *prometheus.CounterVec
	inspectErr *prometheus.CounterVec
}

func newListenerMetrics(reg prometheus.Registerer) (*listenerMetrics, error) {
	l := []string{"listener"}
	c := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "remora", Subsystem: "listener", Name: name, Help: help}, l)
	}
	m := &listenerMetrics{
		cxTotal:    c("downstream_cx_total", "Connections accepted."),
		cxOverflow: c("downstream_cx_overflow_total", "Connections refused by max_connections."),
		noChain:    c("no_filter_chain_match_total", "Connections that matched no filter chain."),
		inspectErr: c("tls_inspector_error_total", "Connections tls_inspector could not read."),
		cxActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "remora", Subsystem: "listener", Name: "downstream_cx_active",
			Help: "Open connections."}, l),
	}
	for _, col := range []prometheus.Collector{m.cxTotal, m.cxActive, m.cxOverflow, m.noChain, m.inspectErr} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	return m, nil
}

// chain is a compiled filter chain: its match, its TLS config and either
// the chainServer that serves the connections handed to it (hcm, srv, ln)
// or a TCP proxy (tcp).
type chain struct {
	match  config.FilterChainMatch
	hcm    *hcm.Manager
	tcp    *tcpproxy.Proxy
	tls    *tls.Config
	srv    *chainServer
	ln     *chanListener
	served chan struct{}
}

// listener is one TCP listener.
type listener struct {
	cfg       config.Listener
	chains    []*chain
	inspector bool
	log       *zap.Logger
	metrics   *listenerMetrics
	sem       chan struct{} // nil: unlimited
	capture   capture       // original_dst and use_original_dst (virtual.go)

	ln      net.Listener
	mu      sync.Mutex
	closed  bool
	acceptW sync.WaitGroup

	// conns are the open downstream connections, so that a drain can close
	// every one left once the streams finished.
	connMu sync.Mutex
	conns  map[*countedConn]struct{}
}

func (l *listener) track(c *countedConn) {
	l.connMu.Lock()
	if l.conns == nil {
		l.conns = map[*countedConn]struct{}{}
	}
	l.conns[c] = struct{}{}
	l.connMu.Unlock()
}

func (l *listener) untrack(c *countedConn) {
	l.connMu.Lock()
	delete(l.conns, c)
	l.connMu.Unlock()
}

// closeConns closes every open downstream connection.
func (l *listener) closeConns() {
	l.connMu.Lock()
	cs := make([]*countedConn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.connMu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// activeStreams counts the streams in flight on the listener's chains; a
// TCP proxy's connection counts as one stream.
func (l *listener) activeStreams() int64 {
	var n int64
	for _, c := range l.chains {
		if c.tcp != nil {
			n += int64(c.tcp.Active())
			continue
		}
		n += c.hcm.ActiveStreams()
	}
	return n
}

// loadTLS builds a chain's TLS configuration. Its files are read now, so
// that a bad file fails the configuration, and again on a later handshake
// when one of them changed, so that rotated certificates are served
// without a reload; a rotation that fails keeps the previous files in use
// and is logged. The returned configuration's NextProtos (which the chain
// may still adjust) applies to every handshake.
func loadTLS(t *config.DownstreamTLS, log *zap.Logger) (*tls.Config, error) {
	files, err := tlsconfig.NewServerFiles(tlsconfig.Server{CertFile: t.CertFile, KeyFile: t.KeyFile,
		ClientCAFile: t.ClientCAFile, RequireClientCert: t.RequireClientCertificate, ALPN: t.ALPN})
	if err != nil {
		return nil, err
	}
	first, _ := files.Config()
	base := first.Clone()
	var mu sync.Mutex
	var from, served *tls.Config // the files' configuration and its copy with the chain's ALPN
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		tc, err := files.Config()
		if err != nil {
			log.Warn("tls: certificate files could not be reloaded; the previous ones stay in use", zap.Error(err))
		}
		mu.Lock()
		defer mu.Unlock()
		if tc != from {
			c := tc.Clone()
			c.NextProtos = base.NextProtos
			from, served = tc, c
		}
		return served, nil
	}
	return base, nil
}

// chanListener is a net.Listener fed by the listener's accept loop after
// it picked this chain.
type chanListener struct {
	addr   net.Addr
	ch     chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// hand gives c to the chain's server; false when the chain is closed.
func (l *chanListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

// countedConn releases a connection slot and the active gauge once. Conn
// is the accepted socket with sockio's reads and writes.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes the connection when the underlying one can (the
// HTTP/1 codec's lingering close after an error response).
func (c *countedConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// peekedConn replays bytes read by tls_inspector.
type peekedConn struct {
	net.Conn
	buf []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite: see countedConn.CloseWrite.
func (c *peekedConn) CloseWrite() error { return closeWrite(c.Conn) }

// start runs the chains' servers for connections from ln, the view of a
// listening socket the Server keeps across configuration reloads
// (reload_socket.go); ln is nil for a listener that does not bind
// (bind_to_port: false), which only takes connections handed to it.
// accept then starts taking connections from ln.
func (l *listener) start(ln net.Listener) {
	l.ln = ln
	var addr net.Addr = net.TCPAddrFromAddrPort(l.addrPort())
	if ln != nil {
		addr = ln.Addr()
	}
	for _, c := range l.chains {
		if c.tcp != nil {
			continue // served on the accepting goroutine
		}
		c.ln = newChanListener(addr)
		c.served = make(chan struct{})
		var sl net.Listener = c.ln
		if c.tls != nil {
			sl = tls.NewListener(c.ln, c.tls)
		}
		go func(c *chain, sl net.Listener) {
			defer close(c.served)
			_ = c.srv.Serve(sl)
		}(c, sl)
	}
}

// accept starts accepting connections on the listener's socket, if it has
// one. Server.Start calls it once every listener has started, so that a
// connection handed from one listener to another (use_original_dst) finds
// its target serving.
func (l *listener) accept() {
	if l.ln != nil {
		l.acceptW.Add(1)
		go l.acceptLoop()
	}
}

func (l *listener) acceptLoop() {
	defer l.acceptW.Done()
	name := l.cfg.Name
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.log.Warn("accept failed", zap.String("listener", name), zap.Error(err))
			time.Sleep(10 * time.Millisecond) // back off on EMFILE and the like
			continue
		}
		if cc := l.admit(c); cc != nil {
			go l.dispatch(cc)
		}
	}
}

// admit counts c as one of the listener's connections (max_connections,
// downstream_cx_total and _active, tracking for drains); it closes c and
// returns nil when the listener is full.
func (l *listener) admit(c net.Conn) *countedConn {
	name := l.cfg.Name
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		default:
			l.metrics.cxOverflow.WithLabelValues(name).Inc()
			c.Close()
			return nil
		}
	}
	l.metrics.cxTotal.WithLabelValues(name).Inc()
	l.metrics.cxActive.WithLabelValues(name).Inc()
	cc := &countedConn{Conn: sockio.Wrap(c)}
	cc.release = func() {
		l.untrack(cc)
		l.metrics.cxActive.WithLabelValues(name).Dec()
		if l.sem != nil {
			<-l.sem
		}
	}
	l.track(cc)
	return cc
}

// dispatch runs the listener filters and hands c to its filter chain.
func (l *listener) dispatch(cc *countedConn) {
	if l.capture.origDst {
		l.dispatchCaptured(cc) // virtual.go
		return
	}
	l.serve(cc, netip.AddrPort{})
}

// serve runs tls_inspector and hands cc to its filter chain. dst, when
// valid, is the original destination original_dst recovered: it stands
// for the socket's local address in chain matching and StreamInfo.
func (l *listener) serve(cc *countedConn, dst netip.AddrPort) {
	var c net.Conn = cc
	var peeked []byte
	var ch *ClientHello
	transport := "raw_buffer"
	if l.inspector {
		_ = c.SetReadDeadline(time.Now().Add(l.cfg.ListenerFiltersTimeout.D()))
		hello, buf, err := inspect(c)
		_ = c.SetReadDeadline(time.Time{})
		if err != nil && !errors.Is(err, errNotTLS) {
			l.metrics.inspectErr.WithLabelValues(l.cfg.Name).Inc()
			l.log.Debug("tls_inspector failed", zap.Error(err))
			c.Close()
			return
		}
		if hello != nil {
			ch, transport = hello, "tls"
		}
		peeked = buf
		c = &peekedConn{Conn: c, buf: buf}
	}
	port := 0
	if dst.IsValid() {
		port = int(dst.Port())
	} else if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		port = a.Port
	}
	best := selectChain(l.chains, port, ch, transport)
	if best == nil {
		l.metrics.noChain.WithLabelValues(l.cfg.Name).Inc()
		c.Close()
		return
	}
	if best.tcp != nil {
		if l.loops(best, dst) {
			cc.Close()
			return
		}
		l.serveTCP(best, cc, peeked, ch, dst)
		return
	}
	if dst.IsValid() {
		c = &origDstConn{Conn: c, local: dst}
	}
	if !best.ln.hand(c) {
		c.Close()
	}
}

// serveTCP runs a tcp_proxy chain on cc. A plain connection is handed
// over as the *net.TCPConn itself (with the bytes tls_inspector read), so
// that the proxy can splice; a TLS chain terminates TLS first. hello is
// the ClientHello tls_inspector parsed, nil if none; dst the original
// destination, invalid if none.
func (l *listener) serveTCP(ch *chain, cc *countedConn, peeked []byte, hello *ClientHello, dst netip.AddrPort) {
	d := tcpproxy.Downstream{Conn: cc.Conn, Close: cc.Close, Initial: peeked, LocalAddress: dst,
		Info: filter.ConnectionInfo{ID: hcm.NextConnID(), ListenerName: l.cfg.Name, Direction: l.cfg.Direction}}
	if hello != nil {
		d.RequestedServerName = hello.ServerName // also for TLS passed through
	}
	if ch.tls != nil {
		var raw net.Conn = cc.Conn
		if len(peeked) > 0 {
			raw = &peekedConn{Conn: cc.Conn, buf: peeked}
		}
		tc := tls.Server(raw, ch.tls)
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.ListenerFiltersTimeout.D())
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.log.Debug("tls handshake failed", zap.String("listener", l.cfg.Name), zap.Error(err))
			cc.Close()
			return
		}
		st := tc.ConnectionState()
		d.Conn, d.Initial, d.TLS, d.RequestedServerName = tc, nil, true, st.ServerName
		if len(st.PeerCertificates) > 0 {
			d.Info.PeerCertificatePresented = true
			for _, u := range st.PeerCertificates[0].URIs {
				d.Info.PeerCertificateURISANs = append(d.Info.PeerCertificateURISANs, u.String())
			}
			if len(d.Info.PeerCertificateURISANs) > 0 {
				d.PeerURISAN = d.Info.PeerCertificateURISANs[0]
			}
		}
	}
	ch.tcp.Serve(d)
}

// inspect reads until a full ClientHello (or proof that there is none).
func inspect(c net.Conn) (*ClientHello, []byte, error) {
	buf := make([]byte, 0, 1024)
	tmp := make([]byte, 4096)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if n > 0 {
			ch, perr := ParseClientHello(buf)
			switch {
			case perr == nil:
				return ch, buf, nil
			case errors.Is(perr, errNeedMore):
			default:
				if errors.Is(perr, errNotTLS) {
					return nil, buf, errNotTLS
				}
				return nil, buf, perr
			}
			if len(buf) > maxClientHello+5*8 {
				return nil, buf, errors.New("tls_inspector: client hello too large")
			}
		}
		if err != nil {
			if err == io.EOF {
				return nil, buf, io.ErrUnexpectedEOF
			}
			return nil, buf, err
		}
	}
}

// selectChain picks the most specific matching chain: destination port,
// then server name (exact over the longest *.suffix), then transport
// protocol, then application protocols.
func selectChain(chains []*chain, port int, ch *ClientHello, transport string) *chain {
	var best *chain
	var bestScore [4]int
	sni := ""
	var alpn []string
	if ch != nil {
		sni, alpn = strings.ToLower(ch.ServerName), ch.ALPN
	}
	for _, c := range chains {
		m := &c.match
		var score [4]int
		if m.DestinationPort != 0 {
			if m.DestinationPort != port {
				continue
			}
			score[0] = 1
		}
		if len(m.ServerNames) > 0 {
			s := serverNameScore(m.ServerNames, sni)
			if s == 0 {
				continue
			}
			score[1] = s
		}
		if m.TransportProtocol != "" {
			if m.TransportProtocol != transport {
				continue
			}
			score[2] = 1
		}
		if len(m.ApplicationProtocols) > 0 {
			if !anyIn(m.ApplicationProtocols, alpn) {
				continue
			}
			score[3] = 1
		}
		if best == nil || less(bestScore, score) {
			best, bestScore = c, score
		}
	}
	return best
}

func less(a, b [4]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// serverNameScore is 0 for no match, 1<<20 for an exact match, and the
// suffix length for a *.suffix wildcard match (longer wins).
func serverNameScore(names []string, sni string) int {
	best := 0
	for _, n := range names {
		n = strings.ToLower(n)
		if n == sni {
			return 1 << 20
		}
		if strings.HasPrefix(n, "*.") && len(sni) > len(n)-1 && strings.HasSuffix(sni, n[1:]) {
			if len(n) > best {
				best = len(n)
			}
		}
	}
	return best
}

func anyIn(want, have []string) bool {
	for _, w := range want {
		for _, h := range have {
			if w == h {
				return true
			}
		}
	}
	return false
}

// stopAccepting closes the listening socket.
func (l *listener) stopAccepting() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.ln == nil {
		return
	}
	l.closed = true
	l.ln.Close()
	l.acceptW.Wait()
}

// addrPort is the bound address (for tests with port 0); for a listener
// that does not bind, its configured address.
func (l *listener) addrPort() netip.AddrPort {
	if l.ln == nil {
		if !l.cfg.Binds() {
			ap, _ := netip.ParseAddrPort(l.cfg.Address)
			return ap
		}
		return netip.AddrPort{}
	}
	a, _ := l.ln.Addr().(*net.TCPAddr)
	if a == nil {
		return netip.AddrPort{}
	}
	return a.AddrPort()
}
