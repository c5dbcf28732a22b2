package client

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/internal/testpki"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// mtlsServer records the URI SAN of each caller.
type mtlsServer struct {
	testServer
	callers chan string
}

func (s *mtlsServer) Check(ctx context.Context, req *mixerv1.CheckRequest) (*mixerv1.CheckResponse, error) {
	id := ""
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 && len(ti.State.PeerCertificates[0].URIs) > 0 {
			id = ti.State.PeerCertificates[0].URIs[0].String()
		}
	}
	s.callers <- id
	return s.testServer.Check(ctx, req)
}

// TestMutualTLS: the client presents its certificate to a server that
// requires one, and fails (by its fail policy) without one.
func TestMutualTLS(t *testing.T) {
	const id = "spiffe://cluster.local/ns/default/sa/reviews"
	pki := testpki.New(t, id)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mtlsServer{testServer: testServer{t: t, reports: make(chan []attributes.Bag, 10)}, callers: make(chan string, 10)}
	srv.check = policy(t, nil, 0, 0, func(attributes.Bag) codes.Code { return codes.OK })
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerTLS)))
	mixerv1.RegisterMixerServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	newTLSClient := func(tc *TLSConfig) *Client {
		cfg := Config{Address: lis.Addr().String(), TLS: tc, Check: CheckConfig{FailPolicy: FailClose, Timeout: 2e9}}
		cfg.ApplyDefaults()
		c, err := New(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c.Close(ctx)
		})
		return c
	}
	c := newTLSClient(&TLSConfig{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile})
	if r := c.Check(context.Background(), request("/", "", ""), nil); !r.Allowed() || r.TransportErr != nil {
		t.Fatalf("mTLS check: %+v", r)
	}
	if got := <-srv.callers; got != id {
		t.Fatalf("server saw caller %q, want %q", got, id)
	}
	noCert := newTLSClient(&TLSConfig{CAFile: pki.CAFile})
	r := noCert.Check(context.Background(), request("/", "", ""), nil)
	if r.Allowed() || r.TransportErr == nil {
		t.Fatalf("a client without a certificate got %+v, want a transport failure (fail-close)", r)
	}
}
