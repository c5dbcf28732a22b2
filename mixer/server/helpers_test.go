package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/policy"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// rbacPolicy is an opa-envoy-plugin style policy: public GETs by path,
// everything else by a role header.
const rbacPolicy = `package envoy.authz

import rego.v1

default allow := false

allow if {
	input.attributes.request.http.method == "GET"
	startswith(input.attributes.request.http.path, "/public/")
}

allow if input.attributes.request.http.headers["x-role"] == "admin"
`

// principalPolicy allows one SPIFFE identity.
const principalPolicy = `package envoy.authz

import rego.v1

default allow := false

allow if input.attributes.source.principal == "spiffe://cluster.local/ns/default/sa/client"
`

func policyConfig(modules ...string) Config {
	var c Config
	c.Policy.Modules = map[string]string{}
	for i, m := range modules {
		c.Policy.Modules[string(rune('a'+i))+".rego"] = m
	}
	return c
}

type testServer struct {
	srv    *Server
	reg    *prometheus.Registry
	conn   *grpc.ClientConn
	mixer  mixerv1.MixerClient
	authz  authv3.AuthorizationClient
	health healthpb.HealthClient
	grpcAd string
	monURL string
	cancel context.CancelFunc
	done   chan error
}

// start runs a server on loopback listeners; it is stopped at cleanup.
func start(t testing.TB, cfg Config, opts Options, clientTLS *tls.Config) *testServer {
	t.Helper()
	if opts.Registry == nil {
		opts.Registry = prometheus.NewPedanticRegistry()
	}
	srv, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{srv: srv, reg: opts.Registry, grpcAd: gl.Addr().String(), monURL: "http://" + ml.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx, gl, ml) }()
	creds := insecure.NewCredentials()
	if clientTLS != nil {
		creds = credentials.NewTLS(clientTLS)
	}
	ts.conn, err = grpc.NewClient(ts.grpcAd, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	ts.mixer = mixerv1.NewMixerClient(ts.conn)
	ts.authz = authv3.NewAuthorizationClient(ts.conn)
	ts.health = healthpb.NewHealthClient(ts.conn)
	t.Cleanup(func() {
		ts.conn.Close()
		ts.stop(t)
		srv.Close()
	})
	return ts
}

// stop cancels Serve and waits for it to return.
func (ts *testServer) stop(t testing.TB) {
	ts.cancel()
	select {
	case err, ok := <-ts.done:
		if ok && err != nil {
			t.Errorf("serve: %v", err)
		}
		if ok {
			close(ts.done)
		}
	case <-time.After(10 * time.Second):
		t.Error("serve did not return")
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func headers(kv ...string) attributes.Value {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return attributes.StringMapValue(attributes.StringMapOf(m))
}

func checkRequest(method, path string, hdrs attributes.Value) *mixerv1.CheckRequest {
	m := map[string]attributes.Value{
		attributes.RequestMethod: attributes.String(method),
		attributes.RequestPath:   attributes.String(path),
	}
	if hdrs.IsValid() {
		m[attributes.RequestHeaders] = hdrs
	}
	gwc := attributes.GlobalWordCount()
	return &mixerv1.CheckRequest{Attributes: attributes.Compress(attributes.BagOf(m), gwc), GlobalWordCount: gwc}
}

// referenced decodes referenced attributes to "name" or "name[key]" with
// their condition.
func referenced(t testing.TB, ra *mixerv1.ReferencedAttributes, gwc uint32) map[string]mixerv1.ReferencedAttributes_Condition {
	t.Helper()
	dec, err := attributes.NewWordDecoder(gwc, ra.GetWords())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mixerv1.ReferencedAttributes_Condition{}
	for _, m := range ra.GetAttributeMatches() {
		name, err := dec.Word(m.GetName())
		if err != nil {
			t.Fatal(err)
		}
		if m.GetMapKey() != 0 {
			k, err := dec.Word(m.GetMapKey())
			if err != nil {
				t.Fatal(err)
			}
			name += "[" + k + "]"
		}
		out[name] = m.GetCondition()
	}
	return out
}

var _ = policy.DefaultPolicy
