package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

func TestReflectionListsServices(t *testing.T) {
	ts := start(t, policyConfig(rbacPolicy), Options{}, nil)
	stream, err := rpb.NewServerReflectionClient(ts.conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	got := strings.Join(names, ",")
	for _, want := range []string{"istio.mixer.v1.Mixer", "envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
		if !strings.Contains(got, want) {
			t.Errorf("reflection lists %s, missing %s", got, want)
		}
	}
}

func TestMaxRecvMessageSize(t *testing.T) {
	cfg := policyConfig(rbacPolicy)
	cfg.GRPC.MaxRecvMessageSize = 1024
	ts := start(t, cfg, Options{}, nil)
	big := attributes.BagOf(map[string]attributes.Value{attributes.RequestPath: attributes.String(strings.Repeat("x", 4096))})
	gwc := attributes.GlobalWordCount()
	_, err := ts.mixer.Check(ctxT(t), &mixerv1.CheckRequest{Attributes: attributes.Compress(big, gwc), GlobalWordCount: gwc})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized check: %v, want RESOURCE_EXHAUSTED", err)
	}
}

func TestPprofOptIn(t *testing.T) {
	cfg := policyConfig(rbacPolicy)
	cfg.Monitoring.Pprof = true
	ts := start(t, cfg, Options{}, nil)
	if c, body := httpGet(t, ts.monURL+"/debug/pprof/"); c != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index %d", c)
	}
}
