//go:build !sidecar

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/remora-mesh/remora/mixer/server"
	"github.com/remora-mesh/remora/policy"
)

func init() {
	register(&command{name: "mixer", summary: "run the policy and telemetry server", run: runMixer})
}

// mixerFlags are the quick overrides of the configuration file.
type mixerFlags struct {
	config, policy, grpcAddr, monAddr, logLevel string
	printConfig                                 bool
}

func runMixer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mixer", "[--config FILE] [--policy PATH] [--grpc-addr ADDR] [--monitoring-addr ADDR] [--print-config]", stderr)
	var f mixerFlags
	fs.StringVar(&f.config, "config", "", "YAML configuration `file` (docs/mixer.md); without it the embedded default policy and the standard metrics are served")
	fs.StringVar(&f.policy, "policy", "", "Rego file or directory of Rego and data files; replaces policy.paths")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "", "gRPC listen address (default "+server.DefaultGRPCAddress+"); replaces grpc.address")
	fs.StringVar(&f.monAddr, "monitoring-addr", "", "monitoring HTTP listen address (default "+server.DefaultMonitoringAddress+"); replaces monitoring.address")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error; replaces log.level")
	fs.BoolVar(&f.printConfig, "print-config", false, "print the effective configuration with defaults and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, embedded, err := mixerConfig(f)
	if err != nil {
		return err
	}
	if f.printConfig {
		out, err := cfg.Marshal()
		if err != nil {
			return err
		}
		if embedded {
			fmt.Fprintf(stdout, "# policy: the embedded default policy (%s) serves, because no policy path is configured\n", policy.DefaultPolicyFile)
		}
		_, err = stdout.Write(out)
		return err
	}

	log, err := newLogger(cfg.Log.Level, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr may not support sync
	if embedded {
		log.Info("no policy path configured: serving the embedded default policy", zap.String("module", policy.DefaultPolicyFile))
	}
	applyRuntime(cfg.Runtime, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(ctx, cfg, server.Options{Logger: log, Registry: reg})
	if err != nil {
		return err
	}
	defer srv.Close()
	return srv.Run(ctx)
}

// applyRuntime sets the process's GC target from runtime.gc_percent,
// unless the GOGC environment variable already set it.
func applyRuntime(rc server.RuntimeConfig, log *zap.Logger) {
	if v, ok := os.LookupEnv("GOGC"); ok {
		log.Info("GOGC is set in the environment: runtime.gc_percent is not applied", zap.String("GOGC", v))
		return
	}
	debug.SetGCPercent(rc.GCPercent)
}

// mixerConfig loads the configuration, applies the flags and the defaults
// and validates it. embedded reports that the default policy serves.
func mixerConfig(f mixerFlags) (cfg server.Config, embedded bool, err error) {
	if f.config != "" {
		if cfg, err = server.LoadConfig(f.config); err != nil {
			return cfg, false, err
		}
	}
	if f.policy != "" {
		cfg.Policy.Paths = []string{f.policy}
	}
	if f.grpcAddr != "" {
		cfg.GRPC.Address = f.grpcAddr
	}
	if f.monAddr != "" {
		cfg.Monitoring.Address = f.monAddr
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	if len(cfg.Policy.Paths) == 0 && len(cfg.Policy.Modules) == 0 {
		cfg.Policy.Modules = map[string]string{policy.DefaultPolicyFile: policy.DefaultPolicy}
		embedded = true
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, embedded, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, embedded, nil
}

// newLogger returns a JSON logger at level writing to w.
func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core), nil
}
