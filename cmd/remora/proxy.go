package main

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	_ "github.com/remora-mesh/remora/proxy/filters/all" // the standard HTTP filters
)

func init() {
	register(&command{name: "proxy", summary: "run the sidecar proxy", run: runProxy})
}

// defaultProxyConfig is what `remora proxy` serves without a configuration.
//
//go:embed proxy_default.yaml
var defaultProxyConfig []byte

const proxyUsage = `--config FILE | --listen ADDR --upstream ADDR [--mixer ADDR [--fail-close]] [--ext-authz ADDR] [--access-log PATH] [--admin ADDR] [--print-config]

Runs the sidecar. With --config the YAML bootstrap file is used (see
docs/configuration.md); with neither --config nor quick mode, the embedded
default (an inbound sidecar on 127.0.0.1:8080 for an application on
127.0.0.1:8000, checking against a mixer on 127.0.0.1:9091, fail-open). Quick mode (--listen and --upstream) builds the
equivalent of one listener speaking HTTP/1.1 and h2c, one catch-all route
and one cluster with protocol use_downstream; --mixer adds the mixer filter
(check and report, fail-open unless --fail-close), --ext-authz the ext_authz
filter, --access-log a file access log in Envoy's default format.
--print-config prints the effective configuration and exits. SIGUSR1
reopens access-log files; SIGTERM drains and exits. With --config, SIGHUP
reloads the file, and so does a change of its content (polled every
--watch-interval, symlink swaps such as Kubernetes ConfigMap updates
included; 0 disables polling): a configuration that fails to load or build
is rejected and the running one keeps serving (docs/operations.md).`

func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("proxy", proxyUsage, stderr)
	configPath := fs.String("config", "", "bootstrap configuration `file` (YAML)")
	listen := fs.String("listen", "", "quick mode: listener `address` (host:port)")
	upstreamAddr := fs.String("upstream", "", "quick mode: upstream `address` (ip:port or host:port)")
	adminAddr := fs.String("admin", "", "admin server `address` (default 127.0.0.1:15000; \"-\" disables)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration as YAML and exit")
	watchInterval := fs.Duration("watch-interval", defaultWatchInterval, "with --config: how often the file's content is checked for a change to reload (0 disables; SIGHUP always reloads)")
	var q config.QuickOptions
	fs.StringVar(&q.Mixer, "mixer", "", "quick mode: Mixer server `address` for the mixer filter (check and report)")
	fs.BoolVar(&q.FailClose, "fail-close", false, "quick mode: deny requests (503) while the Mixer server is unreachable")
	fs.StringVar(&q.ExtAuthz, "ext-authz", "", "quick mode: ext_authz server `address`")
	fs.StringVar(&q.AccessLog, "access-log", "", "quick mode: access-log file `path` (Envoy's default format; /dev/stdout works)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	q.Listen, q.Upstream, q.Admin = *listen, *upstreamAddr, *adminAddr
	if *watchInterval < 0 {
		return usagef("--watch-interval must not be negative")
	}
	cfg, err := proxyConfig(*configPath, q)
	if err != nil {
		return err
	}
	if *printConfig {
		b, err := config.Marshal(cfg)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	logs, err := server.NewLogs(zapcore.Lock(zapcore.AddSync(stderr)), cfg.Logging.Level, cfg.Logging.Components)
	if err != nil {
		return err
	}
	log := logs.Logger("main").Named("main")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv, err := server.New(cfg, server.Options{Logs: logs, Quit: cancel})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		return err
	}
	log.Info("remora proxy started", zap.String("node", cfg.Node.ID), zap.Stringer("admin", srv.AdminAddr()))
	reopen := make(chan os.Signal, 1)
	signal.Notify(reopen, syscall.SIGUSR1)
	defer signal.Stop(reopen)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var rl *configReloader
	var poll <-chan time.Time
	if *configPath != "" {
		rl = newConfigReloader(*configPath, *adminAddr, srv)
		if *watchInterval > 0 {
			t := time.NewTicker(*watchInterval)
			defer t.Stop()
			poll = t.C
		}
	}
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-reopen:
			if err := srv.ReopenLogs(); err != nil {
				log.Warn("reopening access logs", zap.Error(err))
			} else {
				log.Info("access logs reopened")
			}
		case <-hup:
			if rl == nil {
				log.Warn("SIGHUP ignored: no --config file to reload")
				continue
			}
			log.Info("SIGHUP: reloading the configuration", zap.String("file", *configPath))
			_ = rl.reload(true) // logged, counted and shown by the server
		case <-poll:
			_ = rl.reload(false)
		}
	}
	drain := srv.Config().DrainTimeout.D()
	log.Info("draining", zap.Duration("timeout", drain))
	dctx, dcancel := context.WithTimeout(context.Background(), drain)
	defer dcancel()
	// A second signal during the drain cuts it short.
	sig, stop := signal.NotifyContext(dctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Drain(sig); err != nil {
		log.Warn("drain cut short", zap.Error(err))
	}
	log.Info("stopped")
	return nil
}

// proxyConfig loads the configuration file or builds the quick-mode one.
func proxyConfig(path string, q config.QuickOptions) (*config.Bootstrap, error) {
	listen, upstreamAddr, adminAddr := q.Listen, q.Upstream, q.Admin
	quick := listen != "" || upstreamAddr != ""
	if !quick && (q.Mixer != "" || q.FailClose || q.ExtAuthz != "" || q.AccessLog != "") {
		return nil, usagef("--mixer, --fail-close, --ext-authz and --access-log belong to quick mode (--listen/--upstream)")
	}
	switch {
	case path != "" && quick:
		return nil, usagef("--config cannot be combined with --listen/--upstream")
	case path == "" && !quick:
		cfg, err := config.Parse(defaultProxyConfig)
		if err != nil {
			return nil, fmt.Errorf("embedded default configuration: %w", err)
		}
		if adminAddr != "" {
			cfg.Admin.Address = adminAddr
		}
		return cfg, cfg.Validate()
	case quick && (listen == "" || upstreamAddr == ""):
		return nil, usagef("quick mode needs both --listen and --upstream")
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		return parseProxyFile(data, adminAddr)
	}
	b, err := config.Marshal(config.Quick(q))
	if err != nil {
		return nil, err
	}
	cfg, err := config.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("quick mode: %w", err)
	}
	return cfg, nil
}

// parseProxyFile parses a configuration file's content, with --admin
// overriding admin.address.
func parseProxyFile(data []byte, adminAddr string) (*config.Bootstrap, error) {
	cfg, err := config.Parse(data)
	if err != nil {
		return nil, err
	}
	if adminAddr != "" {
		cfg.Admin.Address = adminAddr
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// defaultWatchInterval is how often --config's content is checked.
const defaultWatchInterval = 5 * time.Second

// configReloader reloads the proxy from its configuration file. It reads
// the file through its path each time, so a symlink swap (Kubernetes
// ConfigMap volumes replace a ..data symlink) is followed, and compares
// the SHA-256 digest of the content with the last one it tried, so an
// unchanged file (or a touch) is not reloaded and a rejected content is
// not retried until it changes again.
type configReloader struct {
	path, admin string
	srv         *server.Server
	mu          sync.Mutex
	digest      [sha256.Size]byte
}

// newConfigReloader remembers the digest of the file as it is now (the
// proxy just loaded it).
func newConfigReloader(path, admin string, srv *server.Server) *configReloader {
	r := &configReloader{path: path, admin: admin, srv: srv}
	if data, err := os.ReadFile(path); err == nil {
		r.digest = sha256.Sum256(data)
	}
	return r
}

// reload reloads the file when its content changed since the last attempt,
// or always when force is set (SIGHUP). A file that cannot be read fails
// a forced reload; polling skips it (a writer may be replacing it) and
// tries again on the next tick.
func (r *configReloader) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := os.ReadFile(r.path)
	if err != nil {
		if !force {
			return nil
		}
		return r.srv.Reload(func() (*config.Bootstrap, error) { return nil, fmt.Errorf("config: %w", err) })
	}
	d := sha256.Sum256(data)
	if !force && d == r.digest {
		return nil
	}
	r.digest = d
	return r.srv.Reload(func() (*config.Bootstrap, error) { return parseProxyFile(data, r.admin) })
}
