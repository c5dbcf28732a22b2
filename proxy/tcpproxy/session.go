package tcpproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/remora-mesh/remora/internal/sockio"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/filters/mixer"
	"github.com/remora-mesh/remora/proxy/upstream"
)

// aLongTimeAgo is a deadline in the past: setting it interrupts a read.
var aLongTimeAgo = time.Unix(1, 0)

// bufPool holds the copy buffers of connections that cannot splice.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// direction is one half of a connection: bytes read from src are written
// to dst. Its fields below mu are guarded by the session's mu.
type direction struct {
	src, dst net.Conn
	bytes    atomic.Uint64
	upstream bool // src is the upstream connection

	done       bool      // src ended (EOF) and dst was half-closed
	quietSince time.Time // src carried no byte since then, as of its last period
	pokedAt    time.Time // when the other direction interrupted this one's read; zero if not
}

// session is one proxied connection. It is reused through the Proxy's
// pool.
type session struct {
	p    *Proxy
	d    Downstream
	info filter.StreamInfo
	mx   *mixer.TCPSession

	mu       sync.Mutex
	up       *upstream.TCPConn
	closing  bool
	idleShut bool
	rx, tx   direction // rx: downstream → upstream; tx: upstream → downstream
	wg       sync.WaitGroup
}

func (s *session) init(p *Proxy, d Downstream) {
	s.p, s.d = p, d
	s.info.Reset()
	start := time.Now()
	s.info.StartTime = start
	s.info.Protocol = filter.ProtocolTCP
	s.info.DownstreamRemoteAddress = addrPort(d.Conn.RemoteAddr())
	s.info.DownstreamDirectRemoteAddress = s.info.DownstreamRemoteAddress
	s.info.DownstreamLocalAddress = addrPort(d.Conn.LocalAddr())
	if d.LocalAddress.IsValid() {
		s.info.DownstreamLocalAddress = d.LocalAddress
	}
	s.info.DownstreamTLS = d.TLS
	s.info.RequestedServerName = d.RequestedServerName
	s.info.DownstreamPeerURISAN = d.PeerURISAN
}

// reset drops references before the session goes back to the pool.
func (s *session) reset() {
	s.p, s.d, s.mx, s.up = nil, Downstream{}, nil, nil
	s.closing, s.idleShut = false, false
	s.rx.reset()
	s.tx.reset()
}

func (d *direction) reset() {
	d.src, d.dst = nil, nil
	d.bytes.Store(0)
	d.done, d.quietSince, d.pokedAt = false, time.Time{}, time.Time{}
}

// abort closes the connection from outside (Proxy.Close).
func (s *session) abort() {
	s.mu.Lock()
	s.closeLocked()
	s.mu.Unlock()
}

// closeLocked closes both connections once; blocked reads then fail.
func (s *session) closeLocked() {
	if s.closing {
		return
	}
	s.closing = true
	s.d.Close()
	if s.up != nil {
		s.up.Close()
	}
}

func (s *session) run() {
	p := s.p
	defer s.finish()
	if p.mixer != nil {
		mx, ok := p.mixer.Open(p.ctx, &s.info, s.d.Info)
		s.mx = mx
		if !ok {
			p.stats.denied.Inc()
			return
		}
	}
	up, err := p.cluster.DialTCP(p.ctx, upstream.LBContext{}, &s.info)
	if err != nil {
		var ue *upstream.Error
		if errors.As(err, &ue) {
			s.info.SetResponseFlag(ue.Flag)
		} else {
			s.info.SetResponseFlag(filter.UpstreamConnectionFailure)
		}
		p.stats.connectFail.Inc()
		p.log.Debug("upstream connect failed", zap.String("cluster", p.cfg.Cluster), zap.Error(err))
		return
	}
	upRaw := up.NetConn()
	s.mu.Lock()
	s.up = up
	if s.closing { // Proxy.Close raced with the connect
		up.Close()
		s.mu.Unlock()
		return
	}
	now := time.Now()
	s.rx.src, s.rx.dst, s.rx.quietSince = s.d.Conn, upRaw, now
	s.tx.src, s.tx.dst, s.tx.quietSince, s.tx.upstream = upRaw, s.d.Conn, now, true
	s.mu.Unlock()
	if len(s.d.Initial) > 0 {
		n, err := upRaw.Write(s.d.Initial)
		s.rx.bytes.Add(uint64(n))
		p.stats.rxBytes.Add(float64(n))
		if err != nil {
			s.abort()
			return
		}
	}
	var stopTick, tickDone chan struct{}
	if s.mx != nil {
		stopTick, tickDone = make(chan struct{}), make(chan struct{})
		go s.reportLoop(stopTick, tickDone)
	}
	s.wg.Add(2)
	go s.pump(&s.rx, &s.tx)
	s.pump(&s.tx, &s.rx)
	s.wg.Wait()
	if stopTick != nil {
		close(stopTick)
		<-tickDone
	}
}

// reportLoop sends the mixer's periodic reports until stop is closed.
func (s *session) reportLoop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.p.mixer.ReportInterval())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.mx.Report(s.rx.bytes.Load(), s.tx.bytes.Load())
		case <-stop:
			return
		}
	}
}

// finish closes the connection, then logs and reports it.
func (s *session) finish() {
	s.mu.Lock()
	s.closeLocked()
	s.mu.Unlock()
	info := &s.info
	info.BytesReceived, info.BytesSent = s.rx.bytes.Load(), s.tx.bytes.Load()
	// %DURATION% of a TCP connection is its whole life.
	info.LastDownstreamTxByteSent = time.Since(info.StartTime)
	if s.idleShut {
		info.ResponseCodeDetails = "idle_timeout"
	}
	if s.mx != nil {
		s.mx.Close(info)
	}
	for _, h := range s.p.logs {
		h.Log(info)
	}
}

// pump copies d.src to d.dst until d.src ends, the session closes, or both
// directions have been quiet for the idle timeout.
func (s *session) pump(d, o *direction) {
	defer s.wg.Done()
	p := s.p
	var buf *[]byte
	defer func() {
		if buf != nil {
			bufPool.Put(buf)
		}
	}()
	for {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return
		}
		if p.period > 0 {
			_ = d.src.SetReadDeadline(time.Now().Add(p.period))
		}
		s.mu.Unlock()
		n, err := copyOnce(d.dst, d.src, &buf)
		now := time.Now()
		if n > 0 {
			d.bytes.Add(uint64(n))
			if d.upstream {
				p.stats.txBytes.Add(float64(n))
			} else {
				p.stats.rxBytes.Add(float64(n))
			}
		}
		switch {
		case err == nil: // src sent FIN: pass it on, keep the other way open
			s.mu.Lock()
			d.done = true
			d.quietSince = now // the FIN is the direction's last activity
			both := o.done
			if !both && !d.upstream {
				p.stats.halfClose.Inc()
			}
			s.mu.Unlock()
			if cw, ok := d.dst.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			if both {
				s.abort()
			}
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.mu.Lock()
			if s.closing {
				s.mu.Unlock()
				return
			}
			if s.idleCheckLocked(d, o, n, now) {
				s.idleShut = true
				p.stats.idle.Inc()
				s.closeLocked()
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		default:
			s.mu.Lock()
			if !s.closing {
				if d.upstream {
					s.info.SetResponseFlag(filter.UpstreamConnectionTermination)
				}
				p.log.Debug("connection error", zap.Bool("upstream", d.upstream), zap.Error(err))
				s.closeLocked()
			}
			s.mu.Unlock()
			return
		}
	}
}

// idleCheckLocked runs when d's read deadline passed after n bytes: it
// reports whether the connection has been idle for the timeout. When d is
// quiet but o's quietness is only known from o's last period, o's read is
// interrupted (poked) so that o answers with what it moved meanwhile; o
// then makes the decision. An unanswered poke (o blocked writing to a
// peer that does not read) counts as idle once it is idle_timeout old.
func (s *session) idleCheckLocked(d, o *direction, n int64, now time.Time) bool {
	idle := s.p.idle
	poked := !d.pokedAt.IsZero()
	d.pokedAt = time.Time{}
	if n > 0 {
		d.quietSince = now
	}
	if idle <= 0 || now.Sub(d.quietSince) < idle {
		return false
	}
	switch {
	case poked:
		return true
	case o.done:
		// The other way ended; the connection is idle once that end is
		// idle_timeout old too.
		return now.Sub(o.quietSince) >= idle
	case !o.pokedAt.IsZero():
		return now.Sub(o.pokedAt) >= idle
	case now.Sub(o.quietSince) >= idle:
		o.pokedAt = now
		_ = o.src.SetReadDeadline(aLongTimeAgo)
	}
	return false
}

// copyOnce copies src to dst until EOF (nil error) or an error. Between
// two TCP sockets it is (*net.TCPConn).ReadFrom, which splices on Linux;
// otherwise it copies through a pooled buffer taken on first use.
func copyOnce(dst, src net.Conn, buf **[]byte) (int64, error) {
	if dt, ok := sockio.TCP(dst); ok {
		if st, ok := sockio.TCP(src); ok {
			return dt.ReadFrom(st)
		}
	}
	if *buf == nil {
		*buf = bufPool.Get().(*[]byte)
	}
	return io.CopyBuffer(writerOnly{dst}, readerOnly{src}, **buf)
}

// writerOnly and readerOnly hide ReadFrom and WriteTo so that
// io.CopyBuffer uses the pooled buffer.
type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }
