//lint:file-ignore SA1019 x/net/http2.Server.ServeConn is the only per-connection entry point to an HTTP/2 server: the HTTP/1 codec hands it single connections (ALPN h2, a sniffed h2c preface, an Upgrade: h2c request); net/http.Server serves only listeners.

package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/remora-mesh/remora/proxy/hcm"
	"go.uber.org/zap"
	"golang.org/x/net/http2"
)

// headerTimeout bounds reading a request head (HTTP/1) and a TLS
// handshake. A variable for tests.
var headerTimeout = 60 * time.Second

// chainServer serves the connections handed to an HTTP filter chain:
// HTTP/1.x with the connection manager's own codec (hcm.HTTP1Server),
// HTTP/2 (TLS ALPN "h2", h2c prior knowledge, "Upgrade: h2c") with
// golang.org/x/net/http2. It is safe for concurrent use.
type chainServer struct {
	m     *hcm.Manager
	codec string // AUTO, HTTP1 or HTTP2
	h1    *hcm.HTTP1Server
	h2    *http2.Server
	// h2base carries net/http settings for HTTP/2 connections; its
	// Shutdown makes them send GOAWAY (http2.ConfigureServer hooks it).
	h2base *http.Server
	log    *zap.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// newChainServer builds the server of a filter chain around m. It
// adjusts tlsCfg's ALPN list to the codec type.
func newChainServer(m *hcm.Manager, tlsCfg *tls.Config, log *zap.Logger) (*chainServer, error) {
	cs := &chainServer{m: m, codec: m.CodecType, log: log}
	cs.h2 = &http2.Server{MaxReadFrameSize: 1 << 20, IdleTimeout: m.IdleTimeout}
	cs.h2base = &http.Server{MaxHeaderBytes: m.MaxRequestHeaderBytes, IdleTimeout: m.IdleTimeout,
		ReadHeaderTimeout: headerTimeout, ErrorLog: stdLog(log), Handler: m}
	if err := http2.ConfigureServer(cs.h2base, cs.h2); err != nil {
		return nil, err
	}
	switch cs.codec {
	case "HTTP1":
		if tlsCfg != nil {
			// Never offer h2 by ALPN on a chain that cannot speak it.
			alpn := tlsCfg.NextProtos[:0:0]
			for _, p := range tlsCfg.NextProtos {
				if p != "h2" {
					alpn = append(alpn, p)
				}
			}
			tlsCfg.NextProtos = alpn
		}
	case "HTTP2":
		if tlsCfg != nil {
			tlsCfg.NextProtos = []string{"h2"}
		}
	}
	if cs.codec != "HTTP2" {
		cs.h1 = &hcm.HTTP1Server{M: m, HeaderTimeout: headerTimeout}
		if cs.codec != "HTTP1" {
			cs.h1.H2C = func(ctx context.Context, c net.Conn, up *http.Request, settings []byte) {
				cs.serveH2(ctx, c, up, settings)
			}
		}
	}
	return cs, nil
}

// Serve accepts connections from ln until it is closed.
func (cs *chainServer) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		if !cs.track(c) {
			c.Close()
			continue
		}
		go cs.serveConn(c)
	}
}

func (cs *chainServer) track(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	if cs.conns == nil {
		cs.conns = map[net.Conn]struct{}{}
	}
	cs.conns[c] = struct{}{}
	return true
}

func (cs *chainServer) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		cs.mu.Lock()
		delete(cs.conns, c)
		cs.mu.Unlock()
	}()
	cs.m.ConnOpened()
	defer cs.m.ConnClosed()
	ci := hcm.NewConnInfo(c)
	ctx := hcm.WithConnInfo(context.Background(), ci)
	var ts *tls.ConnectionState
	if tc, ok := c.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, headerTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			cs.log.Debug("tls handshake failed", zap.Error(err))
			return
		}
		st := tc.ConnectionState()
		ts = &st
		if st.NegotiatedProtocol == "h2" {
			cs.serveH2(ctx, c, nil, nil)
			return
		}
	}
	if cs.h1 == nil {
		cs.serveH2(ctx, c, nil, nil) // HTTP2 only: prior knowledge
		return
	}
	cs.h1.ServeConn(ctx, c, ci, ts)
}

// serveH2 serves c as HTTP/2; up is the request of an "Upgrade: h2c".
func (cs *chainServer) serveH2(ctx context.Context, c net.Conn, up *http.Request, settings []byte) {
	cs.h2.ServeConn(c, &http2.ServeConnOpts{Context: ctx, BaseConfig: cs.h2base, Handler: cs.m,
		UpgradeRequest: up, Settings: settings})
}

// Shutdown drains: HTTP/2 connections get GOAWAY, idle HTTP/1
// connections close, busy ones close after their response. It waits for
// the HTTP/1 connections to close, at most until ctx ends (then it returns
// ctx's error); HTTP/2 streams are waited for by the caller
// (Manager.ActiveStreams).
func (cs *chainServer) Shutdown(ctx context.Context) error {
	if err := cs.h2base.Shutdown(ctx); err != nil {
		return err
	}
	if cs.h1 != nil {
		return cs.h1.Drain(ctx)
	}
	return nil
}

// Close closes every connection of the chain.
func (cs *chainServer) Close() error {
	if cs.h1 != nil {
		cs.h1.Close()
	}
	cs.mu.Lock()
	cs.closed = true
	conns := make([]net.Conn, 0, len(cs.conns))
	for c := range cs.conns {
		conns = append(conns, c)
	}
	cs.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return nil
}
