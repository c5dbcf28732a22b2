package server

import (
	"fmt"

	"github.com/remora-mesh/remora/proxy/config"
	"log"
	"os"
	"sort"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Components whose log level /logging can change.
var Components = config.LogComponents

// Logs hands out a *zap.Logger per component, each with its own level.
// It is safe for concurrent use.
type Logs struct {
	enc    zapcore.Encoder
	sink   zapcore.WriteSyncer
	mu     sync.Mutex
	levels map[string]zap.AtomicLevel
}

// NewLogs writes JSON logs to sink (stderr when nil) at level by default,
// with per-component overrides.
func NewLogs(sink zapcore.WriteSyncer, level string, components map[string]string) (*Logs, error) {
	if sink == nil {
		sink = zapcore.Lock(os.Stderr)
	}
	def, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("server: log level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	l := &Logs{enc: zapcore.NewJSONEncoder(ec), sink: sink, levels: map[string]zap.AtomicLevel{}}
	for _, c := range Components {
		l.levels[c] = zap.NewAtomicLevelAt(def)
	}
	for c, lv := range components {
		if err := l.SetLevel(c, lv); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Logger returns the logger of component (created on first use).
func (l *Logs) Logger(component string) *zap.Logger {
	l.mu.Lock()
	lv, ok := l.levels[component]
	if !ok {
		lv = zap.NewAtomicLevelAt(l.levels["main"].Level())
		l.levels[component] = lv
	}
	l.mu.Unlock()
	// Named by the component itself where it logs (upstream, hcm ...).
	return zap.New(zapcore.NewCore(l.enc, l.sink, lv))
}

// SetLevel changes component's level ("all" changes every component).
func (l *Logs) SetLevel(component, level string) error {
	lv, err := zapcore.ParseLevel(level)
	if err != nil {
		return fmt.Errorf("server: log level %q: %w", level, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if component == "all" {
		for _, a := range l.levels {
			a.SetLevel(lv)
		}
		return nil
	}
	a, ok := l.levels[component]
	if !ok {
		return fmt.Errorf("server: unknown log component %q", component)
	}
	a.SetLevel(lv)
	return nil
}

// Levels lists each component's level, sorted by component.
func (l *Logs) Levels() [][2]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([][2]string, 0, len(l.levels))
	for c, a := range l.levels {
		out = append(out, [2]string{c, a.Level().String()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// stdLog routes net/http's own error log (TLS handshake failures, bad
// requests) to debug level: they are per connection.
func stdLog(l *zap.Logger) *log.Logger {
	sl, err := zap.NewStdLogAt(l, zap.DebugLevel)
	if err != nil {
		return zap.NewStdLog(l)
	}
	return sl
}
