package router

import (
	"net/netip"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

func TestHashPolicies(t *testing.T) {
	tbl := compileYAML(t, `
virtual_hosts:
- name: a
  domains: ["*"]
  routes:
  - match: {prefix: /h}
    route: {cluster: c, hash_policy: [{header: {header_name: x-user}}]}
  - match: {prefix: /c}
    route: {cluster: c, hash_policy: [{cookie: {name: session}}]}
  - match: {prefix: /q}
    route: {cluster: c, hash_policy: [{query_parameter: {name: id}}]}
  - match: {prefix: /ip}
    route: {cluster: c, hash_policy: [{connection_properties: {source_ip: true}}]}
  - match: {prefix: /t}
    route: {cluster: c, hash_policy: [{header: {header_name: x-a}, terminal: true}, {header: {header_name: x-b}}]}
  - match: {prefix: /m}
    route: {cluster: c, hash_policy: [{header: {header_name: x-a}}, {header: {header_name: x-b}}]}
`)
	info := &filter.StreamInfo{DownstreamRemoteAddress: netip.MustParseAddrPort("10.0.0.1:5555")}
	key := func(path string, kv ...string) (uint64, bool) {
		h := req("GET", "a", path, kv...)
		lb := tbl.Route(h).hashKey(h, info)
		return lb.HashKey, lb.HasHashKey
	}
	k1, ok1 := key("/h", "x-user", "alice")
	k2, _ := key("/h", "x-user", "alice")
	k3, _ := key("/h", "x-user", "bob")
	if !ok1 || k1 != k2 || k1 == k3 {
		t.Fatalf("header keys: %x %x %x", k1, k2, k3)
	}
	if k1 != fnv1a("alice") {
		t.Fatal("header key is not FNV-1a of the value (must be stable across proxies)")
	}
	if _, ok := key("/h"); ok {
		t.Fatal("key without the header")
	}
	if k, ok := key("/c", "cookie", `a=1; session="s1"; b=2`); !ok || k != fnv1a("s1") {
		t.Fatalf("cookie key %x %v", k, ok)
	}
	if k, ok := key("/q?x=1&id=7"); !ok || k != fnv1a("7") {
		t.Fatalf("query key %x %v", k, ok)
	}
	if _, ok := key("/ip"); !ok {
		t.Fatal("no source ip key")
	}
	ta, _ := key("/t", "x-a", "1", "x-b", "2")
	if ta != fnv1a("1") {
		t.Fatal("terminal policy did not stop")
	}
	tb, _ := key("/t", "x-b", "2")
	if tb != fnv1a("2") {
		t.Fatal("policy after a terminal one without value was not used")
	}
	m, _ := key("/m", "x-a", "1", "x-b", "2")
	a := fnv1a("1")
	if m != (a<<1|a>>63)^fnv1a("2") {
		t.Fatal("policies not combined")
	}
}
