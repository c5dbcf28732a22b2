package accesslog

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	alsv3 "github.com/remora-mesh/remora/proto/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "als"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestGRPCSinkTLS dials a TLS-only service with the credentials passed in
// Options.DialOptions.
func TestGRPCSinkTLS(t *testing.T) {
	ctx := testCtx(t)
	cert, pool := selfSigned(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *alsv3.StreamAccessLogsMessage, 10)
	a := &alsServer{msgs: msgs, srv: grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))}
	alsv3.RegisterAccessLogServiceServer(a.srv, a)
	served := make(chan struct{})
	go func() { defer close(served); a.srv.Serve(lis) }()
	t.Cleanup(func() { a.srv.Stop(); <-served })

	creds := credentials.NewClientTLSFromCert(pool, "")
	h, m := newGRPCHandler(t, GRPCConfig{Address: lis.Addr().String()},
		Options{DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(creds)}})
	h.Log(idStream("tls"))
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, _ := receive(t, ctx, msgs, 1); ids[0] != "tls" {
		t.Errorf("ids %v", ids)
	}
	if got := counter(t, m, m.logsWritten, "als"); got != 1 {
		t.Errorf("logs_written = %d", got)
	}
}
