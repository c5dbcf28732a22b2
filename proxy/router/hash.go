package router

import (
	"strings"

	"github.com/remora-mesh/remora/proxy/config"
	"github.com/remora-mesh/remora/proxy/filter"
	"github.com/remora-mesh/remora/proxy/upstream"
)

// hashKind is what a hash policy reads.
type hashKind uint8

const (
	hashHeader hashKind = iota
	hashCookie
	hashSourceIP
	hashQuery
)

type hashPolicy struct {
	kind     hashKind
	name     string
	terminal bool
}

func compileHashPolicies(ps []config.HashPolicy) []hashPolicy {
	out := make([]hashPolicy, 0, len(ps))
	for _, p := range ps {
		hp := hashPolicy{terminal: p.Terminal}
		switch {
		case p.Header != nil:
			hp.kind, hp.name = hashHeader, strings.ToLower(p.Header.HeaderName)
			if hp.name == "host" {
				hp.name = filter.HeaderAuthority
			}
		case p.Cookie != nil:
			hp.kind, hp.name = hashCookie, p.Cookie.Name
		case p.QueryParameter != nil:
			hp.kind, hp.name = hashQuery, p.QueryParameter.Name
		case p.ConnectionProperties != nil:
			hp.kind = hashSourceIP
		default:
			continue
		}
		out = append(out, hp)
	}
	return out
}

// fnv1a is FNV-1a 64: stable across processes, so every sidecar maps a
// key to the same host of a consistent-hashing cluster.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func fnv1aBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// hashKey computes the request's hash key from the route's policies,
// combining several as Envoy does (rotate left one bit, xor).
func (e *Entry) hashKey(h *filter.HeaderMap, info *filter.StreamInfo) upstream.LBContext {
	var lb upstream.LBContext
	for i := range e.hashPolicies {
		p := &e.hashPolicies[i]
		var v uint64
		ok := false
		switch p.kind {
		case hashHeader:
			var s string
			if s, ok = h.Get(p.name); ok {
				v = fnv1a(s)
			}
		case hashCookie:
			var s string
			if s, ok = cookieValue(h, p.name); ok {
				v = fnv1a(s)
			}
		case hashQuery:
			_, q, _ := strings.Cut(h.Path(), "?")
			var s string
			if s, ok = queryValue(q, p.name); ok {
				v = fnv1a(s)
			}
		case hashSourceIP:
			if a := info.DownstreamRemoteAddress.Addr(); a.IsValid() {
				b := a.Unmap().As16()
				v, ok = fnv1aBytes(b[:]), true
			}
		}
		if !ok {
			continue
		}
		if lb.HasHashKey {
			lb.HashKey = (lb.HashKey<<1 | lb.HashKey>>63) ^ v
		} else {
			lb.HashKey, lb.HasHashKey = v, true
		}
		if p.terminal {
			break
		}
	}
	return lb
}

// cookieValue finds a cookie in the request's cookie headers.
func cookieValue(h *filter.HeaderMap, name string) (string, bool) {
	for _, f := range h.Fields() {
		if f.Name != "cookie" {
			continue
		}
		v := f.Value
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ";")
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			if k == name {
				return strings.Trim(val, `"`), true
			}
		}
	}
	return "", false
}
