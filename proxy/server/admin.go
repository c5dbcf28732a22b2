package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/remora-mesh/remora/internal/version"
	"github.com/remora-mesh/remora/proxy/config"
	"go.uber.org/zap"
)

// admin is the admin HTTP server (Envoy's /ready, /stats, /clusters ...).
type admin struct {
	s   *Server
	srv *http.Server
	ln  net.Listener
	log *zap.Logger
}

func newAdmin(s *Server) *admin {
	a := &admin{s: s, log: s.logs.Logger("admin").Named("admin")}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", a.ready)
	mux.HandleFunc("/server_info", a.serverInfo)
	mux.HandleFunc("/stats", a.stats)
	mux.Handle("/stats/prometheus", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/clusters", a.clusters)
	mux.HandleFunc("/config_dump", a.configDump)
	mux.HandleFunc("/logging", a.logging)
	mux.HandleFunc("/drain_listeners", a.post(func(w http.ResponseWriter, r *http.Request) {
		s.DrainListeners()
		io.WriteString(w, "OK\n")
	}))
	mux.HandleFunc("/reopen_logs", a.post(func(w http.ResponseWriter, r *http.Request) {
		if err := s.ReopenLogs(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "OK\n")
	}))
	mux.HandleFunc("/quitquitquit", a.post(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "OK\n")
		if s.quit != nil {
			go s.quit()
		}
	}))
	if s.Config().Admin.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", a.help)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: stdLog(a.log)}
	return a
}

func (a *admin) start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: admin: %w", err)
	}
	a.ln = ln
	go func() { _ = a.srv.Serve(ln) }()
	return nil
}

func (a *admin) addr() netip.AddrPort {
	if a.ln == nil {
		return netip.AddrPort{}
	}
	return a.ln.Addr().(*net.TCPAddr).AddrPort()
}

func (a *admin) close() error {
	if err := a.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// post allows only POST for a mutating endpoint.
func (a *admin) post(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}
}

func (a *admin) help(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	io.WriteString(w, `admin commands:
  /ready            200 LIVE, or 503 DRAINING
  /server_info      version, node, state, uptime (JSON)
  /stats            Envoy-style text stats
  /stats/prometheus Prometheus exposition
  /clusters         upstream clusters and hosts
  /config_dump      the effective configuration (YAML), then last_reload
  /logging          GET levels; POST ?level=L or ?<component>=L
  /drain_listeners  POST: stop accepting connections
  /reopen_logs      POST: reopen access-log files (after logrotate)
  /quitquitquit     POST: drain and exit
`)
	if a.s.Config().Admin.Pprof {
		io.WriteString(w, "  /debug/pprof/     Go profiles (admin.pprof)\n")
	}
}

func (a *admin) state() string {
	if a.s.Draining() {
		return "DRAINING"
	}
	return "LIVE"
}

func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	st := a.state()
	if st != "LIVE" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, st+"\n")
}

func (a *admin) serverInfo(w http.ResponseWriter, r *http.Request) {
	cfg := a.s.Config()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{
		"version":        version.String(),
		"state":          a.state(),
		"uptime_seconds": int64(time.Since(a.s.started).Seconds()),
		"node":           map[string]any{"id": cfg.Node.ID, "cluster": cfg.Node.Cluster, "metadata": cfg.Node.Metadata},
	})
}

// clusters serves /clusters in Envoy's text format, or with
// ?format=json in Envoy's ClusterStatus JSON shape.
func (a *admin) clusters(w http.ResponseWriter, r *http.Request) {
	var err error
	switch f := r.URL.Query().Get("format"); f {
	case "", "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		err = a.s.upstreams.WriteClusters(w)
	case "json":
		w.Header().Set("Content-Type", "application/json")
		err = a.s.upstreams.WriteClustersJSON(w)
	default:
		http.Error(w, "unknown format "+strconv.Quote(f)+" (text or json)", http.StatusBadRequest)
		return
	}
	if err != nil {
		a.log.Debug("clusters", zap.Error(err))
	}
}

// configDump writes the active configuration as YAML; after a reload was
// attempted a last_reload section follows it (see configDumpReload).
func (a *admin) configDump(w http.ResponseWriter, r *http.Request) {
	b, err := config.Marshal(a.s.Config())
	if err == nil {
		b, err = appendLastReload(b, a.s.LastReload())
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(b)
}

func (a *admin) logging(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for k, vs := range r.Form {
			comp := k
			if k == "level" {
				comp = "all"
			}
			for _, v := range vs {
				if err := a.s.logs.SetLevel(comp, v); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
		}
	} else if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	} else if len(r.URL.RawQuery) > 0 {
		http.Error(w, "changing levels needs POST", http.StatusMethodNotAllowed)
		return
	}
	io.WriteString(w, "active loggers:\n")
	for _, l := range a.s.logs.Levels() {
		fmt.Fprintf(w, "  %s: %s\n", l[0], l[1])
	}
}

// stats renders the registry in Envoy's text form: a metric
// remora_<scope>_<stat>{<label>=<v>...} becomes "<scope>.<v>...<stat>: value",
// counters without their _total suffix.
func (a *admin) stats(w http.ResponseWriter, r *http.Request) {
	mfs, err := a.s.reg.Gather()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	filterRe := r.URL.Query().Get("filter")
	var lines []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := envoyStatName(mf.GetName(), m.GetLabel())
			if filterRe != "" && !strings.Contains(name, filterRe) {
				continue
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				lines = append(lines, fmt.Sprintf("%s: %d", name, uint64(m.GetCounter().GetValue())))
			case dto.MetricType_GAUGE:
				lines = append(lines, fmt.Sprintf("%s: %d", name, int64(m.GetGauge().GetValue())))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				lines = append(lines, fmt.Sprintf("%s: count=%d sum=%g P50=%s P99=%s", name, h.GetSampleCount(), h.GetSampleSum(),
					quantile(h, 0.5), quantile(h, 0.99)))
			case dto.MetricType_UNTYPED:
				lines = append(lines, fmt.Sprintf("%s: %g", name, m.GetUntyped().GetValue()))
			}
		}
	}
	sort.Strings(lines)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, strings.Join(lines, "\n")+"\n")
}

func envoyStatName(name string, labels []*dto.LabelPair) string {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "remora_"), "envoy_")
	if !strings.HasSuffix(name, "rq_total") && !strings.HasSuffix(name, "cx_total") {
		name = strings.TrimSuffix(name, "_total") // Prometheus' suffix, not Envoy's
	}
	scope, stat, ok := strings.Cut(name, "_")
	if !ok {
		return name
	}
	parts := []string{scope}
	for _, l := range labels {
		if l.GetName() == "response_code_class" {
			stat = strings.Replace(stat, "_xx", "_"+l.GetValue(), 1)
			continue
		}
		parts = append(parts, l.GetValue())
	}
	parts = append(parts, stat)
	return strings.Join(parts, ".")
}

// quantile estimates a quantile from histogram buckets (upper bound of the
// bucket holding it), "nan" without samples.
func quantile(h *dto.Histogram, q float64) string {
	total := h.GetSampleCount()
	if total == 0 {
		return "nan"
	}
	rank := uint64(math.Ceil(q * float64(total)))
	for _, b := range h.GetBucket() {
		if b.GetCumulativeCount() >= rank {
			return fmt.Sprintf("%g", b.GetUpperBound())
		}
	}
	return "+Inf"
}
