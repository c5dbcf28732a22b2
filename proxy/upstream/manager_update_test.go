package upstream

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestManagerUpdate(t *testing.T) {
	a := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) }))
	b := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("b")) }))
	reg := prometheus.NewRegistry()
	m := newTestManager(t, Options{Registry: reg}, staticCluster("keep", a.addr()), staticCluster("gone", a.addr()), staticCluster("change", a.addr()))
	keep := m.Cluster("keep")
	roundTrip(t, keep, reqHeaders("GET", "/", "x"), nil, StreamOptions{})
	before := statOf(keep, statRqTotal)

	err := m.Update([]ClusterConfig{staticCluster("keep", a.addr()), staticCluster("change", b.addr()), staticCluster("new", b.addr())})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if m.Cluster("keep") != keep {
		t.Error("an unchanged cluster was rebuilt")
	}
	if got := statOf(m.Cluster("keep"), statRqTotal); got != before {
		t.Errorf("unchanged cluster's upstream_rq_total = %d, want %d (stats kept)", got, before)
	}
	if m.Cluster("gone") != nil {
		t.Error("removed cluster still resolves")
	}
	for _, tc := range []struct{ cluster, want string }{{"keep", "a"}, {"change", "b"}, {"new", "b"}} {
		t.Run(tc.cluster, func(t *testing.T) {
			_, body, _ := roundTrip(t, m.Cluster(tc.cluster), reqHeaders("GET", "/", "x"), nil, StreamOptions{})
			if string(body) != tc.want {
				t.Errorf("body %q, want %q", body, tc.want)
			}
		})
	}
	var names []string
	for _, c := range m.Clusters() {
		names = append(names, c.Name())
	}
	if got := strings.Join(names, ","); got != "keep,change,new" {
		t.Errorf("Clusters() = %s", got)
	}
	// One collector across updates: the registry gathers without a
	// duplicate and shows the new set only.
	n, err := testutil.GatherAndCount(reg, "envoy_cluster_upstream_rq_total")
	if err != nil || n != 3 {
		t.Errorf("envoy_cluster_upstream_rq_total series = %d, %v; want 3", n, err)
	}
	waitFor(t, "retired clusters closed", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.retiring) == 0
	})
}

func TestManagerUpdateInvalidKeepsSet(t *testing.T) {
	m := newTestManager(t, Options{}, staticCluster("a", "127.0.0.1:1"))
	cur := m.Current()
	tests := []struct {
		name string
		cfgs []ClusterConfig
		want string
	}{
		{"duplicate", []ClusterConfig{staticCluster("x", "127.0.0.1:1"), staticCluster("x", "127.0.0.1:2")}, `clusters[1].name: duplicate cluster name "x"`},
		{"bad endpoint", []ClusterConfig{staticCluster("x", "nope")}, "clusters[0].endpoints[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Update(tc.cfgs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Update error %v, want it to contain %q", err, tc.want)
			}
			if m.Current() != cur {
				t.Error("a failed update changed the set")
			}
		})
	}
}

func TestClusterUpdateRetiredWaitsForInFlight(t *testing.T) {
	release := make(chan struct{})
	a := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("slow"))
	}))
	m := newTestManager(t, Options{}, staticCluster("old", a.addr()))
	old := m.Cluster("old")
	s, err := old.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := m.PrepareUpdate([]ClusterConfig{staticCluster("other", a.addr())})
	if err != nil {
		t.Fatal(err)
	}
	if added, removed := u.Changes(); len(added) != 1 || added[0] != "other" || len(removed) != 1 || removed[0] != "old" {
		t.Errorf("Changes() = %v, %v", added, removed)
	}
	if u.Set().Cluster("other") == nil || m.Cluster("other") != nil {
		t.Error("a prepared update must be visible in its set only")
	}
	r, err := u.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if r.InFlight() != 1 {
		t.Errorf("InFlight = %d, want 1", r.InFlight())
	}
	close(release)
	rh, _, err := s.ReadHeaders(testCtx(t))
	if err != nil {
		t.Fatalf("in-flight request on a retired cluster: %v", err)
	}
	if st, _ := rh.Get(":status"); err != nil || st != "200" {
		t.Fatalf("in-flight request on a retired cluster: %v %v", rh, err)
	}
	buf := make([]byte, 16)
	for {
		if _, err := s.ReadData(buf); err != nil {
			break
		}
	}
	s.Close()
	if r.InFlight() != 0 {
		t.Errorf("InFlight = %d after the request ended", r.InFlight())
	}
	r.Close()
	r.Close() // idempotent
	if _, err := old.NewStream(testCtx(t), reqHeaders("GET", "/", "x"), true, StreamOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewStream on a closed retired cluster: %v, want ErrClosed", err)
	}
}

func TestClusterUpdateConcurrentAndAbort(t *testing.T) {
	m := newTestManager(t, Options{}, staticCluster("a", "127.0.0.1:1"))
	u1, err := m.PrepareUpdate([]ClusterConfig{staticCluster("b", "127.0.0.1:2")})
	if err != nil {
		t.Fatal(err)
	}
	u2, err := m.PrepareUpdate([]ClusterConfig{staticCluster("c", "127.0.0.1:3")})
	if err != nil {
		t.Fatal(err)
	}
	r, err := u1.Commit()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := u2.Commit(); !errors.Is(err, ErrConcurrentUpdate) {
		t.Errorf("stale Commit: %v, want ErrConcurrentUpdate", err)
	}
	u3, err := m.PrepareUpdate([]ClusterConfig{staticCluster("d", "127.0.0.1:4")})
	if err != nil {
		t.Fatal(err)
	}
	u3.Abort()
	u3.Abort()
	if m.Cluster("b") == nil || m.Cluster("d") != nil {
		t.Error("abort changed the set")
	}
}
