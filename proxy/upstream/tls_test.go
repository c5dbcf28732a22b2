package upstream

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/internal/testpki"
	"github.com/remora-mesh/remora/proxy/filter"
)

// tlsServer is an HTTPS loopback server recording the SNI and client
// certificate URI of its last connection.
type tlsServer struct {
	*httptest.Server
	sni     atomic.Value // string
	peerURI atomic.Value // string
	alpn    atomic.Value // string
}

func newTLSServer(t *testing.T, cfg *tls.Config, h2 bool) *tlsServer {
	ts := &tlsServer{}
	ts.sni.Store("")
	ts.peerURI.Store("")
	ts.alpn.Store("")
	ts.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 && len(r.TLS.PeerCertificates[0].URIs) > 0 {
			ts.peerURI.Store(r.TLS.PeerCertificates[0].URIs[0].String())
		}
		ts.alpn.Store(r.TLS.NegotiatedProtocol)
		w.Header().Set("x-proto", r.Proto)
		io.WriteString(w, "secure")
	}))
	cfg = cfg.Clone()
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		ts.sni.Store(hello.ServerName)
		return nil, nil
	}
	ts.TLS = cfg
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some tests
	ts.EnableHTTP2 = h2
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

func (ts *tlsServer) addr() string { return ts.Listener.Addr().String() }

func serverConfig(t *testing.T, certFile, keyFile string) *tls.Config {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

func tlsCluster(name, addr string, tc UpstreamTLSConfig) ClusterConfig {
	c := staticCluster(name, addr)
	c.TLS = &tc
	return c
}

func TestTLSOrigination(t *testing.T) {
	pki := testpki.New(t, "spiffe://remora.test/ns/default/sa/proxy")
	other := testpki.New(t, "spiffe://other/x")
	sniCert, sniKey := pki.IssueServer("backend", "backend.test")

	t.Run("sni verified and health checked", func(t *testing.T) {
		srv := newTLSServer(t, serverConfig(t, sniCert, sniKey), false)
		cfg := tlsCluster("tls", srv.addr(), UpstreamTLSConfig{SNI: "backend.test", CAFile: pki.CAFile})
		cfg.HealthChecks = hcCluster("x", httpHC("/healthz")).HealthChecks
		m := newTestManager(t, Options{}, cfg)
		c := m.Cluster("tls")
		if !c.Hosts()[0].Healthy() {
			t.Fatalf("health check over TLS failed: %q", c.Hosts()[0].HealthFlags())
		}
		rh, body, _ := roundTrip(t, c, reqHeaders("GET", "/", "backend.test"), nil, StreamOptions{})
		if rh.Status() != "200" || string(body) != "secure" || rh.Value("x-proto") != "HTTP/1.1" {
			t.Fatalf("%v %q", rh.Fields(), body)
		}
		if got := srv.sni.Load(); got != "backend.test" {
			t.Fatalf("server saw SNI %q", got)
		}
		if got := srv.alpn.Load(); got != "http/1.1" {
			t.Fatalf("negotiated %q", got)
		}
		if statOf(c, statSSLHandshake) < 2 || statOf(c, statSSLConnectionError) != 0 {
			t.Fatalf("handshakes %d errors %d", statOf(c, statSSLHandshake), statOf(c, statSSLConnectionError))
		}
	})

	t.Run("dns endpoint's name is the default sni", func(t *testing.T) {
		srv := newTLSServer(t, serverConfig(t, sniCert, sniKey), true)
		_, port, _ := net.SplitHostPort(srv.addr())
		res := &scriptedResolver{answers: map[string][]netip.Addr{}}
		res.set("backend.test", "127.0.0.1")
		cfg := ClusterConfig{Name: "tls", Type: TypeStrictDNS, Protocol: ProtocolHTTP2,
			Endpoints: []EndpointConfig{{Address: "backend.test:" + port}}, TLS: &UpstreamTLSConfig{CAFile: pki.CAFile}}
		cfg.HealthChecks = hcCluster("x", httpHC("/healthz")).HealthChecks // h2 over TLS
		m := newTestManager(t, Options{Resolver: res}, cfg)
		if h := m.Cluster("tls").Hosts()[0]; !h.Healthy() || srv.alpn.Load() != "h2" {
			t.Fatalf("health check over h2+TLS: flags %q alpn %q", h.HealthFlags(), srv.alpn.Load())
		}
		rh, _, _ := roundTrip(t, m.Cluster("tls"), reqHeaders("GET", "/", "backend.test"), nil, StreamOptions{Protocol: filter.ProtocolHTTP2})
		if rh.Status() != "200" || srv.sni.Load() != "backend.test" || srv.alpn.Load() != "h2" || rh.Value("x-proto") != "HTTP/2.0" {
			t.Fatalf("status %s sni %q alpn %q proto %q", rh.Status(), srv.sni.Load(), srv.alpn.Load(), rh.Value("x-proto"))
		}
	})

	t.Run("ip endpoint sends no sni and verifies the ip", func(t *testing.T) {
		srv := newTLSServer(t, serverConfig(t, pki.ServerCertFile, pki.ServerKeyFile), false)
		m := newTestManager(t, Options{}, tlsCluster("tls", srv.addr(), UpstreamTLSConfig{CAFile: pki.CAFile}))
		rh, _, _ := roundTrip(t, m.Cluster("tls"), reqHeaders("GET", "/", "x"), nil, StreamOptions{})
		if rh.Status() != "200" || srv.sni.Load() != "" {
			t.Fatalf("status %s sni %q", rh.Status(), srv.sni.Load())
		}
	})

	failures := []struct {
		name   string
		tls    UpstreamTLSConfig
		reason string
	}{
		{"wrong ca", UpstreamTLSConfig{CAFile: other.CAFile}, "certificate signed by unknown authority"},
		{"name mismatch", UpstreamTLSConfig{CAFile: pki.CAFile, SNI: "elsewhere.test"}, "valid for backend.test, not elsewhere.test"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			srv := newTLSServer(t, serverConfig(t, sniCert, sniKey), false)
			m := newTestManager(t, Options{}, tlsCluster("tls", srv.addr(), tt.tls))
			c := m.Cluster("tls")
			var info filter.StreamInfo
			_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{Info: &info})
			if flagOf(err) != filter.UpstreamConnectionFailure {
				t.Fatalf("err %v, want UF", err)
			}
			if !strings.HasPrefix(info.UpstreamTransportFailureReason, "TLS error: ") ||
				!strings.Contains(info.UpstreamTransportFailureReason, tt.reason) {
				t.Fatalf("reason %q", info.UpstreamTransportFailureReason)
			}
			if statOf(c, statCxConnectFail) != 1 || statOf(c, statSSLConnectionError) != 1 {
				t.Fatalf("connect_fail %d ssl.connection_error %d", statOf(c, statCxConnectFail), statOf(c, statSSLConnectionError))
			}
		})
	}
}

func TestTLSClientCertificate(t *testing.T) {
	pki := testpki.New(t, "spiffe://remora.test/ns/default/sa/proxy")

	t.Run("with a certificate", func(t *testing.T) {
		srv := newTLSServer(t, pki.ServerTLS, false)
		m := newTestManager(t, Options{}, tlsCluster("mtls", srv.addr(),
			UpstreamTLSConfig{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}))
		rh, _, _ := roundTrip(t, m.Cluster("mtls"), reqHeaders("GET", "/", "x"), nil, StreamOptions{})
		if rh.Status() != "200" || srv.peerURI.Load() != "spiffe://remora.test/ns/default/sa/proxy" {
			t.Fatalf("status %s peer %q", rh.Status(), srv.peerURI.Load())
		}
	})

	t.Run("without, TLS 1.2: handshake fails, UF", func(t *testing.T) {
		cfg := pki.ServerTLS.Clone()
		cfg.MaxVersion = tls.VersionTLS12
		srv := newTLSServer(t, cfg, false)
		m := newTestManager(t, Options{}, tlsCluster("mtls", srv.addr(), UpstreamTLSConfig{CAFile: pki.CAFile}))
		c := m.Cluster("mtls")
		_, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{})
		if flagOf(err) != filter.UpstreamConnectionFailure || statOf(c, statSSLConnectionError) != 1 {
			t.Fatalf("err %v ssl errors %d", err, statOf(c, statSSLConnectionError))
		}
	})

	t.Run("without, TLS 1.3: the server's alert fails the request", func(t *testing.T) {
		// In TLS 1.3 the client's handshake ends before the server checks
		// the client certificate; its refusal arrives with the response.
		srv := newTLSServer(t, pki.ServerTLS, false)
		m := newTestManager(t, Options{}, tlsCluster("mtls", srv.addr(), UpstreamTLSConfig{CAFile: pki.CAFile}))
		c := m.Cluster("mtls")
		s, err := c.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{})
		if err == nil {
			_, _, err = s.ReadHeaders(testCtx(t))
			s.Reset()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("err %v, want the server's certificate-required alert", err)
		}
	})

	t.Run("rotated certificate is used by new connections", func(t *testing.T) {
		srv := newTLSServer(t, pki.ServerTLS, false)
		dir := t.TempDir()
		certFile, keyFile := dir+"/client.pem", dir+"/client-key.pem"
		copyFile(t, pki.ClientCertFile, certFile, time.Now())
		copyFile(t, pki.ClientKeyFile, keyFile, time.Now())
		cfg := tlsCluster("mtls", srv.addr(), UpstreamTLSConfig{CAFile: pki.CAFile, CertFile: certFile, KeyFile: keyFile})
		cfg.MaxRequestsPerConnection = 1 // every request dials
		m := newTestManager(t, Options{}, cfg)
		c := m.Cluster("mtls")
		roundTrip(t, c, reqHeaders("GET", "/", "x"), nil, StreamOptions{})
		if got := srv.peerURI.Load(); got != "spiffe://remora.test/ns/default/sa/proxy" {
			t.Fatalf("peer %q", got)
		}
		newCert, newKey := pki.IssueClient("rotated", "spiffe://remora.test/ns/default/sa/rotated")
		later := time.Now().Add(time.Minute)
		copyFile(t, newCert, certFile, later)
		copyFile(t, newKey, keyFile, later)
		roundTrip(t, c, reqHeaders("GET", "/", "x"), nil, StreamOptions{})
		if got := srv.peerURI.Load(); got != "spiffe://remora.test/ns/default/sa/rotated" {
			t.Fatalf("after rotation the peer is %q", got)
		}
	})
}

func copyFile(t *testing.T, from, to string, mod time.Time) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(to, mod, mod); err != nil {
		t.Fatal(err)
	}
}

// TestTLSH2GRPC sends a gRPC call through an http2 cluster to a real gRPC
// server over TLS: ALPN negotiates h2 (grpc-go refuses TLS without it).
func TestTLSH2GRPC(t *testing.T) {
	pki := testpki.New(t, "spiffe://remora.test/x")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverConfig(t, pki.ServerCertFile, pki.ServerKeyFile))))
	hs := health.NewServer()
	hs.SetServingStatus("known", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	served := make(chan struct{})
	go func() { gs.Serve(ln); close(served) }()
	t.Cleanup(func() { gs.Stop(); <-served })

	cfg := tlsCluster("grpc", ln.Addr().String(), UpstreamTLSConfig{CAFile: pki.CAFile})
	cfg.Protocol = ProtocolHTTP2
	m := newTestManager(t, Options{}, cfg)
	c := m.Cluster("grpc")
	msg, _ := proto.Marshal(&healthpb.HealthCheckRequest{Service: "known"})
	frame := make([]byte, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:5], uint32(len(msg)))
	copy(frame[5:], msg)
	h := reqHeaders("POST", "/grpc.health.v1.Health/Check", "grpc", "content-type", "application/grpc", "te", "trailers")
	rh, body, tr := roundTrip(t, c, h, frame, StreamOptions{Protocol: filter.ProtocolHTTP2})
	if rh.Status() != "200" || tr.Value("grpc-status") != "0" {
		t.Fatalf("headers %v trailers %v", rh.Fields(), tr)
	}
	var resp healthpb.HealthCheckResponse
	if len(body) < 5 || proto.Unmarshal(body[5:], &resp) != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("body %x", body)
	}
	if statOf(c, statCxHTTP2Total) != 1 || statOf(c, statSSLHandshake) != 1 {
		t.Fatalf("h2 connections %d handshakes %d", statOf(c, statCxHTTP2Total), statOf(c, statSSLHandshake))
	}
}

// TestTLSNewManagerRejectsUnreadableFiles: a missing CA file fails the
// configuration with the cluster's path.
func TestTLSNewManagerRejectsUnreadableFiles(t *testing.T) {
	_, err := NewManager([]ClusterConfig{tlsCluster("t", "127.0.0.1:1", UpstreamTLSConfig{CAFile: "/nonexistent/ca.pem"})}, Options{})
	if err == nil || !strings.Contains(err.Error(), "clusters[0].tls: tls: ca_file: stat /nonexistent/ca.pem: no such file or directory") {
		t.Fatalf("err %v", err)
	}
}

// TestTLSDialTCP: a tcp_proxy connection to a TLS cluster is a TLS client
// connection offering the configured ALPN.
func TestTLSDialTCP(t *testing.T) {
	pki := testpki.New(t, "spiffe://x")
	cfg := serverConfig(t, pki.ServerCertFile, pki.ServerKeyFile)
	cfg.NextProtos = []string{"postgresql"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, conn) // echo
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	m := newTestManager(t, Options{}, tlsCluster("db", ln.Addr().String(),
		UpstreamTLSConfig{CAFile: pki.CAFile, ALPN: []string{"postgresql"}}))
	conn, err := m.Cluster("db").DialTCP(testCtx(t), LBContext{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc, ok := conn.NetConn().(*tls.Conn)
	if !ok || tc.ConnectionState().NegotiatedProtocol != "postgresql" {
		t.Fatalf("NetConn %T", conn.NetConn())
	}
	io.WriteString(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("%q %v", buf, err)
	}
}
