package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"reflect"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/upstream"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

// ErrRestartRequired wraps a reload refused because the new configuration
// changes what only a restart applies (the admin server's address, the
// node's identity).
var ErrRestartRequired = errors.New("server: reload: change needs a restart")

// ReloadStatus is the outcome of the last Reload, shown by /config_dump
// under last_reload.
type ReloadStatus struct {
	// Time is when the attempt ended.
	Time time.Time `yaml:"time"`
	// Result is "success" or "failure".
	Result string `yaml:"result"`
	// Error is why a failed reload was rejected (the old configuration
	// keeps serving).
	Error string `yaml:"error,omitempty"`
	// Generation numbers the configuration serving now: 0 is the one the
	// proxy started with, each successful reload adds one.
	Generation int `yaml:"generation"`
}

// LastReload returns the outcome of the last Reload, nil before the first.
func (s *Server) LastReload() *ReloadStatus { return s.lastReload.Load() }

// reloadMetrics are Envoy's server.config_reload_* stats, split by result.
type reloadMetrics struct {
	success, failed prometheus.Counter
	generation      prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) (*reloadMetrics, error) {
	m := &reloadMetrics{
		success: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "remora", Subsystem: "server", Name: "config_reload_success_total",
			Help: "Configuration reloads applied."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "remora", Subsystem: "server", Name: "config_reload_failed_total",
			Help: "Configuration reloads rejected (the previous configuration kept serving)."}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "remora", Subsystem: "server", Name: "config_generation",
			Help: "Number of the configuration serving new connections (0 at start, +1 per applied reload)."}),
	}
	for _, c := range []prometheus.Collector{m.success, m.failed, m.generation} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	return m, nil
}

// Reload replaces the configuration while the proxy serves. load returns
// the new configuration, parsed and validated (config.Load); Reload then
// builds every cluster, listener, chain, filter and route exactly as New
// does and binds the sockets of new listeners. Any error rejects the new
// configuration: the old one keeps serving untouched, the failure is
// logged, counted (server.config_reload_failed) and shown by /config_dump.
//
// On success:
//   - a listener whose name and address are unchanged keeps its listening
//     socket (connects are never refused) and hands new connections to the
//     new chains; a listener removed (or whose address changed) stops
//     accepting;
//   - connections accepted before keep their old chains, filters, routes
//     and clusters: their in-flight streams finish; HTTP connections are
//     then closed as in a drain (idle keep-alive ones at once, busy ones
//     after their response, HTTP/2 by GOAWAY), so that the client's next
//     request reaches the new configuration; TCP proxy connections run
//     until they end. What is still open after drain_timeout is closed.
//     The old generation's filters (access-log files, Mixer clients) are
//     closed after its last connection;
//   - clusters with an unchanged configuration are kept as they are;
//     removed ones are closed once the old generation is done with them.
//
// The admin address and the node identity (id, cluster, metadata) cannot
// change: such a reload is rejected with ErrRestartRequired. Log levels
// are applied. Reload may block while new STRICT_DNS clusters resolve.
// It is safe for concurrent use; reloads run one at a time.
func (s *Server) Reload(load func() (*config.Bootstrap, error)) error {
	s.mu.Lock()
	gen, err := s.reloadLocked(load)
	s.mu.Unlock()
	st := &ReloadStatus{Time: time.Now(), Result: "success", Generation: gen}
	if err != nil {
		st.Result, st.Error = "failure", err.Error()
		s.rm.failed.Inc()
		s.log.Error("configuration reload rejected; the previous configuration keeps serving", zap.Error(err))
	} else {
		s.rm.success.Inc()
		s.rm.generation.Set(float64(gen))
		s.log.Info("configuration reloaded", zap.Int("generation", gen))
	}
	s.lastReload.Store(st)
	if s.onReload != nil {
		s.onReload(err)
	}
	return err
}

// reloadLocked does Reload's work with s.mu held. It returns the number
// of the generation serving afterwards.
func (s *Server) reloadLocked(load func() (*config.Bootstrap, error)) (int, error) {
	old := s.gen.Load()
	switch {
	case s.closed:
		return old.number, errors.New("server: reload: closed")
	case s.draining.Load():
		return old.number, errors.New("server: reload: draining")
	case !s.running:
		return old.number, errors.New("server: reload: not started")
	}
	cfg, err := load()
	if err != nil {
		return old.number, err
	}
	if err := restartOnly(old.cfg, cfg); err != nil {
		return old.number, err
	}
	u, err := s.upstreams.PrepareUpdate(cfg.Clusters)
	if err != nil {
		return old.number, fmt.Errorf("server: %w", err)
	}
	g, err := s.build(cfg, u.Set())
	if err != nil {
		u.Abort()
		return old.number, err
	}
	g.number = old.number + 1
	sockets, opened, err := s.bindLocked(g)
	if err != nil {
		g.close()
		u.Abort()
		return old.number, err
	}
	retired, err := u.Commit()
	if err != nil {
		for _, sock := range opened {
			sock.close()
		}
		g.close()
		return old.number, fmt.Errorf("server: reload: %w", err)
	}

	// Switch: the new generation attaches to every socket before the old
	// one lets go, so a kept socket always has a listener behind it.
	for _, l := range g.listeners {
		var ln net.Listener // none for a listener that does not bind
		if sock := sockets[l.cfg.Name]; sock != nil {
			ln = sock.view()
		}
		l.start(ln)
	}
	for _, l := range g.listeners {
		l.accept()
	}
	for _, l := range old.listeners {
		l.stopAccepting()
	}
	for name, sock := range s.sockets {
		if !keeps(sockets, sock) {
			sock.close()
		}
		delete(s.sockets, name)
	}
	s.sockets = sockets
	s.gen.Store(g)
	s.applyLogging(old.cfg.Logging, cfg.Logging)
	added, removed := u.Changes()
	s.log.Info("configuration switched", zap.Int("generation", g.number),
		zap.Strings("clusters_added", added), zap.Strings("clusters_removed", removed))
	s.retire(old, retired, cfg.DrainTimeout.D())
	return g.number, nil
}

// bindLocked finds each listener of g its socket: the current one of the
// same name when the address is unchanged (or, for a renamed listener,
// the socket of the same address a removed listener leaves), else a new
// one. On error the sockets it opened are closed.
func (s *Server) bindLocked(g *generation) (sockets map[string]*socket, opened []*socket, err error) {
	oldAddr := map[*socket]string{}
	for _, l := range s.gen.Load().listeners {
		if sock := s.sockets[l.cfg.Name]; sock != nil {
			oldAddr[sock] = l.cfg.Address
		}
	}
	sockets = map[string]*socket{}
	claimed := map[*socket]bool{}
	for _, l := range g.listeners {
		if !l.cfg.Binds() {
			continue
		}
		if sock := s.sockets[l.cfg.Name]; sock != nil && oldAddr[sock] == l.cfg.Address {
			sockets[l.cfg.Name], claimed[sock] = sock, true
		}
	}
	for _, l := range g.listeners {
		if sockets[l.cfg.Name] != nil || !l.cfg.Binds() {
			continue
		}
		for sock, addr := range oldAddr {
			if !claimed[sock] && addr == l.cfg.Address && !hasName(g, nameOf(s.sockets, sock)) {
				sockets[l.cfg.Name], claimed[sock] = sock, true
				break
			}
		}
		if sockets[l.cfg.Name] != nil {
			continue
		}
		sock, err := listenSocket(l.cfg.Name, l.cfg.Address, l.log)
		if err != nil {
			for _, o := range opened {
				o.close()
			}
			return nil, nil, fmt.Errorf("server: reload: %w", err)
		}
		sockets[l.cfg.Name] = sock
		opened = append(opened, sock)
	}
	return sockets, opened, nil
}

func keeps(sockets map[string]*socket, sock *socket) bool {
	for _, s := range sockets {
		if s == sock {
			return true
		}
	}
	return false
}

func nameOf(sockets map[string]*socket, sock *socket) string {
	for n, s := range sockets {
		if s == sock {
			return n
		}
	}
	return ""
}

func hasName(g *generation, name string) bool {
	for _, l := range g.listeners {
		if l.cfg.Name == name {
			return true
		}
	}
	return false
}

// restartOnly rejects changes a reload cannot apply.
func restartOnly(old, cfg *config.Bootstrap) error {
	var errs []error
	if old.Admin.Address != cfg.Admin.Address {
		errs = append(errs, fmt.Errorf("admin.address: %q -> %q", old.Admin.Address, cfg.Admin.Address))
	}
	if old.Admin.Pprof != cfg.Admin.Pprof {
		errs = append(errs, fmt.Errorf("admin.pprof: %v -> %v", old.Admin.Pprof, cfg.Admin.Pprof))
	}
	if old.Node.ID != cfg.Node.ID || old.Node.Cluster != cfg.Node.Cluster || !maps.Equal(old.Node.Metadata, cfg.Node.Metadata) {
		errs = append(errs, errors.New("node: the proxy's identity (id, cluster, metadata) changed"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrRestartRequired, err)
	}
	return nil
}

// applyLogging applies changed log levels (validated by config.Parse).
// Levels set at run time through /logging are kept when the logging
// section did not change.
func (s *Server) applyLogging(old, cur config.Logging) {
	if reflect.DeepEqual(old, cur) {
		return
	}
	if cur.Level != "" {
		if err := s.logs.SetLevel("all", cur.Level); err != nil {
			s.log.Warn("reload: log level", zap.Error(err))
		}
	}
	comps := make([]string, 0, len(cur.Components))
	for c := range cur.Components {
		comps = append(comps, c)
	}
	sort.Strings(comps)
	for _, c := range comps {
		if err := s.logs.SetLevel(c, cur.Components[c]); err != nil {
			s.log.Warn("reload: log level", zap.Error(err))
		}
	}
}

// retire drains a replaced generation in the background (see Reload),
// then closes its filters and the clusters the update retired.
func (s *Server) retire(g *generation, retired *upstream.Retired, timeout time.Duration) {
	s.retiring[g] = struct{}{}
	s.retireWG.Add(1)
	go func() {
		defer s.retireWG.Done()
		ctx, cancel := context.WithTimeout(s.retireCtx, timeout)
		cut := drainListeners(ctx, g.listeners)
		cancel()
		if cut {
			s.log.Warn("connections of a replaced configuration were cut at the drain timeout", zap.Int("generation", g.number))
		}
		if err := g.close(); err != nil {
			s.log.Warn("closing a replaced configuration", zap.Int("generation", g.number), zap.Error(err))
		}
		retired.Close()
		s.mu.Lock()
		delete(s.retiring, g)
		s.mu.Unlock()
		s.log.Debug("replaced configuration retired", zap.Int("generation", g.number))
	}()
}

// retiringCount is the number of replaced generations still draining.
func (s *Server) retiringCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.retiring)
}

// appendLastReload adds st to a /config_dump as a top-level last_reload
// mapping after the configuration's keys; nil (no reload attempted yet)
// leaves the dump as it was.
func appendLastReload(dump []byte, st *ReloadStatus) ([]byte, error) {
	if st == nil {
		return dump, nil
	}
	b, err := yaml.Marshal(map[string]*ReloadStatus{"last_reload": st})
	if err != nil {
		return nil, fmt.Errorf("server: config dump: %w", err)
	}
	return append(dump, b...), nil
}
