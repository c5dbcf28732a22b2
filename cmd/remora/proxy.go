package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	_ "github.com/remora-mesh/remora/proxy/filters/all" // the standard HTTP filters
)

func init() {
	register(&command{name: "proxy", summary: "run the sidecar proxy", run: runProxy})
}

const proxyUsage = `--config FILE | --listen ADDR --upstream ADDR [--mixer ADDR [--fail-close]] [--ext-authz ADDR] [--access-log PATH] [--admin ADDR] [--print-config]

Runs the sidecar. With --config the YAML bootstrap file is used (see
docs/configuration.md). Quick mode (--listen and --upstream) builds the
equivalent of one listener speaking HTTP/1.1 and h2c, one catch-all route
and one cluster with protocol use_downstream; --mixer adds the mixer filter
(check and report, fail-open unless --fail-close), --ext-authz the ext_authz
filter, --access-log a file access log in Envoy's default format.
--print-config prints the effective configuration and exits. SIGUSR1
reopens access-log files; SIGTERM drains and exits.`

func runProxy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("proxy", proxyUsage, stderr)
	configPath := fs.String("config", "", "bootstrap configuration `file` (YAML)")
	listen := fs.String("listen", "", "quick mode: listener `address` (host:port)")
	upstreamAddr := fs.String("upstream", "", "quick mode: upstream `address` (ip:port or host:port)")
	adminAddr := fs.String("admin", "", "admin server `address` (default 127.0.0.1:15000; \"-\" disables)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration as YAML and exit")
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
		}
	}
	log.Info("draining", zap.Duration("timeout", cfg.DrainTimeout.D()))
	dctx, dcancel := context.WithTimeout(context.Background(), cfg.DrainTimeout.D())
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
		return nil, usagef("either --config FILE or --listen ADDR --upstream ADDR is required")
	case quick && (listen == "" || upstreamAddr == ""):
		return nil, usagef("quick mode needs both --listen and --upstream")
	}
	if path != "" {
		cfg, err := config.Load(path)
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
