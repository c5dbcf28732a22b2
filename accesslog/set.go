package accesslog

import (
	"context"
	"errors"
	"fmt"

	"github.com/remora-mesh/remora/proxy/filter"
)

// Set is the access logs of one connection manager (or of a whole
// process, for Reopen and Close), in configuration order. It implements
// filter.AccessLogHandler by logging to every member.
type Set []*Handler

var _ filter.AccessLogHandler = Set(nil)

// NewSet builds a handler for every config; path prefixes the field paths
// of validation errors ("listeners[0].access_log" gives
// "listeners[0].access_log[1].config.path: required"). On error the
// handlers already built are closed and nothing is returned.
func NewSet(cfgs []Config, path string, opts Options) (Set, error) {
	var errs []error
	for i := range cfgs {
		c := cfgs[i]
		c.ApplyDefaults()
		if err := c.Validate(fmt.Sprintf("%s[%d]", path, i)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := make(Set, 0, len(cfgs))
	for i := range cfgs {
		h, err := New(cfgs[i], opts)
		if err != nil {
			s.Close(context.Background())
			return nil, fmt.Errorf("%s[%d]: %w", path, i, err)
		}
		s = append(s, h)
	}
	return s, nil
}

// Log offers info to every handler.
func (s Set) Log(info *filter.StreamInfo) {
	for _, h := range s {
		h.Log(info)
	}
}

// Reopen reopens every file sink, returning the failures joined.
func (s Set) Reopen() error {
	var errs []error
	for _, h := range s {
		if err := h.Reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Flush flushes every handler within ctx.
func (s Set) Flush(ctx context.Context) error {
	var errs []error
	for _, h := range s {
		if err := h.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("accesslog: %s: %w", h.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Close closes every handler within ctx.
func (s Set) Close(ctx context.Context) error {
	var errs []error
	for _, h := range s {
		if err := h.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("accesslog: %s: %w", h.Name(), err))
		}
	}
	return errors.Join(errs...)
}
