package upstream_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/upstream"
)

func ExampleCluster_NewStream() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from "+r.Host)
	}))
	defer backend.Close()

	m, err := upstream.NewManager([]upstream.ClusterConfig{{
		Name:      "backend",
		Endpoints: []upstream.EndpointConfig{{Address: backend.Listener.Addr().String()}},
	}}, upstream.Options{Registry: prometheus.NewRegistry()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	ctx := context.Background()
	headers := filter.NewHeaderMap(
		filter.HeaderField{Name: ":method", Value: "GET"},
		filter.HeaderField{Name: ":path", Value: "/"},
		filter.HeaderField{Name: ":authority", Value: "backend.local"},
		filter.HeaderField{Name: ":scheme", Value: "http"},
	)
	var info filter.StreamInfo
	s, err := m.Cluster("backend").NewStream(ctx, headers, true, upstream.StreamOptions{
		Protocol: filter.ProtocolHTTP11, Info: &info,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	resp, _, err := s.ReadHeaders(ctx)
	if err != nil {
		s.Reset()
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(readerFunc(s.ReadData))
	s.Close()
	fmt.Println(resp.Status(), string(body), info.UpstreamCluster)
	// Output: 200 hello from backend.local backend
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
