package policy

import (
	"encoding/base64"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/remora-mesh/remora/attributes"
)

// Interned keys of the input document.
var (
	kAttributes    = ast.StringTerm("attributes")
	kRequest       = ast.StringTerm("request")
	kHTTP          = ast.StringTerm("http")
	kID            = ast.StringTerm("id")
	kMethod        = ast.StringTerm("method")
	kPath          = ast.StringTerm("path")
	kHost          = ast.StringTerm("host")
	kScheme        = ast.StringTerm("scheme")
	kProtocol      = ast.StringTerm("protocol")
	kSize          = ast.StringTerm("size")
	kHeaders       = ast.StringTerm("headers")
	kBody          = ast.StringTerm("body")
	kTime          = ast.StringTerm("time")
	kSource        = ast.StringTerm("source")
	kDestination   = ast.StringTerm("destination")
	kAddress       = ast.StringTerm("address")
	kSocketAddress = ast.StringTerm("socketAddress")
	kPortValue     = ast.StringTerm("portValue")
	kPrincipal     = ast.StringTerm("principal")
	kLabels        = ast.StringTerm("labels")
	kContextExt    = ast.StringTerm("contextExtensions")
	kTLSSession    = ast.StringTerm("tlsSession")
	kSNI           = ast.StringTerm("sni")
	kParsedPath    = ast.StringTerm("parsed_path")
	kParsedQuery   = ast.StringTerm("parsed_query")
	kParsedBody    = ast.StringTerm("parsed_body")
	kTruncatedBody = ast.StringTerm("truncated_body")
	kVersion       = ast.StringTerm("version")
	kMixer         = ast.StringTerm(inputKeyMixer)

	// versionTerm is input.version, as opa-envoy-plugin sets it for v3.
	versionTerm = ast.ObjectTerm(
		ast.Item(ast.StringTerm("encoding"), ast.StringTerm("protojson")),
		ast.Item(ast.StringTerm("ext_authz"), ast.StringTerm("v3")),
	)
)

// inputNeeds says which costly parts of the input document a policy reads;
// the reference analysis computes it. The zero value builds the cheap
// parts only.
type inputNeeds struct {
	// leaves are the parts of the document outside mixer_attributes to build.
	leaves leafSet
	// mixerAll: the whole bag under mixer_attributes; otherwise only the
	// attributes named in mixer.
	mixerAll bool
	mixer    map[string]bool
	// headerKeys, when not nil, are the only request.headers keys the
	// policy reads (constant keys, never the map as a whole): the headers
	// object is built with just these. Nil builds every header.
	headerKeys []string
}

// fullInput builds every part of the input document.
var fullInput = inputNeeds{leaves: allLeaves, mixerAll: true}

// BuildInput returns the opa-envoy-plugin compatible input document for
// bag, built directly as an OPA AST value (docs/policy.md lists every
// field). It fails when request.path cannot be parsed as a URL or when a
// JSON body is malformed, as opa-envoy-plugin does.
func BuildInput(bag attributes.Bag) (ast.Value, error) {
	return buildInput(bag, &fullInput)
}

func buildInput(bag attributes.Bag, needs *inputNeeds) (ast.Value, error) {
	top := make([][2]*ast.Term, 0, 8)
	if attrs := buildAttributes(bag, needs.leaves, needs.headerKeys); attrs != nil {
		top = append(top, ast.Item(kAttributes, attrs))
	}
	if needs.leaves.has(leafParsedPath) || needs.leaves.has(leafParsedQuery) {
		pv, _ := bag.Get(attributes.RequestPath)
		segments, query, err := parsePath(pv.StringValue())
		if err != nil {
			return nil, err
		}
		top = append(top, ast.Item(kParsedPath, segments), ast.Item(kParsedQuery, query))
	}
	if needs.leaves.has(leafParsedBody) || needs.leaves.has(leafTruncatedBody) {
		parsed, truncated, err := parseBody(bag)
		if err != nil {
			return nil, err
		}
		top = append(top, ast.Item(kParsedBody, parsed), ast.Item(kTruncatedBody, ast.InternedTerm(truncated)))
	}
	top = append(top, ast.Item(kVersion, versionTerm))
	if needs.mixerAll || len(needs.mixer) > 0 {
		top = append(top, ast.Item(kMixer, mixerObject(bag, needs)))
	}
	return ast.NewObject(top...), nil
}

// buildAttributes builds the leaves of input.attributes; nil when the bag
// has none of them.
func buildAttributes(bag attributes.Bag, leaves leafSet, headerKeys []string) *ast.Term {
	items := make([][2]*ast.Term, 0, 5)
	var httpItems [9][2]*ast.Term
	http := httpItems[:0]
	addString := func(id leafID, key *ast.Term, name string) {
		if !leaves.has(id) {
			return
		}
		if v, ok := bag.Get(name); ok && v.Kind() == attributes.KindString && v.StringValue() != "" {
			http = append(http, ast.Item(key, strTerm(v.StringValue())))
		}
	}
	addString(leafHTTPID, kID, attributes.RequestID)
	addString(leafHTTPMethod, kMethod, attributes.RequestMethod)
	addString(leafHTTPPath, kPath, attributes.RequestPath)
	addString(leafHTTPHost, kHost, attributes.RequestHost)
	addString(leafHTTPScheme, kScheme, attributes.RequestScheme)
	addString(leafHTTPProtocol, kProtocol, attributes.RequestProtocol)
	if v, ok := bag.Get(attributes.RequestSize); ok && leaves.has(leafHTTPSize) && v.Kind() == attributes.KindInt64 && v.Int64Value() != 0 {
		// protojson writes int64 fields as strings; so does the plugin's input.
		http = append(http, ast.Item(kSize, ast.StringTerm(strconv.FormatInt(v.Int64Value(), 10))))
	}
	if leaves.has(leafHTTPHeaders) {
		// Always present, so that aliasing it (h := ...headers) cannot fail
		// on one bag and succeed on another with the same references.
		var t *ast.Term
		if headerKeys != nil {
			t = stringMapKeysTerm(bag, attributes.RequestHeaders, headerKeys)
		} else {
			t = stringMapTerm(bag, attributes.RequestHeaders)
		}
		if t == nil {
			t = ast.ObjectTerm()
		}
		http = append(http, ast.Item(kHeaders, t))
	}
	addString(leafHTTPBody, kBody, attributes.RequestBody)

	var request [][2]*ast.Term
	if v, ok := bag.Get(attributes.RequestTime); ok && leaves.has(leafRequestTime) && v.Kind() == attributes.KindTimestamp {
		request = append(request, ast.Item(kTime, ast.StringTerm(formatTimestamp(v.TimeValue()))))
	}
	// The http object exists whenever the policy reads any of it, so that
	// aliasing it cannot fail on some bags only.
	if len(http) > 0 || leaves&httpLeaves != 0 {
		request = append(request, ast.Item(kHTTP, ast.ObjectTerm(http...)))
	}
	if len(request) > 0 {
		items = append(items, ast.Item(kRequest, ast.ObjectTerm(request...)))
	}
	if t := peerTerm(bag, leaves, leafSourceIP, attributes.SourceIP, attributes.SourcePort, attributes.SourcePrincipal, attributes.SourceLabels); t != nil {
		items = append(items, ast.Item(kSource, t))
	}
	if t := peerTerm(bag, leaves, leafDestinationIP, attributes.DestinationIP, attributes.DestinationPort, attributes.DestinationPrincipal, attributes.DestinationLabels); t != nil {
		items = append(items, ast.Item(kDestination, t))
	}
	if leaves.has(leafContextExtensions) {
		if t := stringMapTerm(bag, attributes.ContextExtensions); t != nil {
			items = append(items, ast.Item(kContextExt, t))
		}
	}
	if v, ok := bag.Get(attributes.ConnectionRequestedServerName); ok && leaves.has(leafSNI) && v.Kind() == attributes.KindString && v.StringValue() != "" {
		items = append(items, ast.Item(kTLSSession, ast.ObjectTerm(ast.Item(kSNI, strTerm(v.StringValue())))))
	}
	if len(items) == 0 {
		return nil
	}
	return ast.ObjectTerm(items...)
}

// peerTerm builds an AttributeContext.Peer object; nil when empty. The
// peer's four leaves are consecutive from first: ip, port, principal,
// labels.
func peerTerm(bag attributes.Bag, leaves leafSet, first leafID, ipName, portName, principalName, labelsName string) *ast.Term {
	var items [][2]*ast.Term
	var sock [][2]*ast.Term
	if v, ok := bag.Get(ipName); ok && leaves.has(first) && v.Kind() == attributes.KindIPAddress {
		if ip, ok := v.IPValue(); ok {
			sock = append(sock, ast.Item(kAddress, ast.StringTerm(ip.String())))
		}
	}
	if v, ok := bag.Get(portName); ok && leaves.has(first+1) && v.Kind() == attributes.KindInt64 && v.Int64Value() != 0 {
		sock = append(sock, ast.Item(kPortValue, ast.InternedTerm(v.Int64Value())))
	}
	if len(sock) > 0 {
		items = append(items, ast.Item(kAddress, ast.ObjectTerm(ast.Item(kSocketAddress, ast.ObjectTerm(sock...)))))
	}
	if v, ok := bag.Get(principalName); ok && leaves.has(first+2) && v.Kind() == attributes.KindString && v.StringValue() != "" {
		items = append(items, ast.Item(kPrincipal, strTerm(v.StringValue())))
	}
	if leaves.has(first + 3) {
		if t := stringMapTerm(bag, labelsName); t != nil {
			items = append(items, ast.Item(kLabels, t))
		}
	}
	if len(items) == 0 {
		return nil
	}
	return ast.ObjectTerm(items...)
}

// stringMapTerm builds an object from a string-map attribute; nil when the
// attribute is absent, empty or of another kind (protojson omits empty maps).
func stringMapTerm(bag attributes.Bag, name string) *ast.Term {
	v, ok := bag.Get(name)
	if !ok || v.Kind() != attributes.KindStringMap || v.StringMapValue().Len() == 0 {
		return nil
	}
	return stringMapObject(v.StringMapValue())
}

// stringMapKeysTerm is stringMapTerm with only the given keys: a policy
// that reads nothing else of the map cannot tell the difference.
func stringMapKeysTerm(bag attributes.Bag, name string, keys []string) *ast.Term {
	v, ok := bag.Get(name)
	if !ok || v.Kind() != attributes.KindStringMap {
		return nil
	}
	m := v.StringMapValue()
	var buf [4][2]*ast.Term
	items := buf[:0]
	for _, k := range keys {
		if val, ok := m.Get(k); ok {
			items = append(items, ast.Item(strTerm(k), strTerm(val)))
		}
	}
	if len(items) == 0 {
		return nil
	}
	return ast.ObjectTerm(items...)
}

func stringMapObject(m attributes.StringMap) *ast.Term {
	kvs := m.Entries()
	items := make([][2]*ast.Term, len(kvs))
	for i, kv := range kvs {
		items[i] = ast.Item(strTerm(kv.Key), strTerm(kv.Value))
	}
	return ast.ObjectTerm(items...)
}

// parsePath splits path into parsed_path and parsed_query exactly as
// opa-envoy-plugin does: the URL path without its leading slashes split on
// "/", and the query as name → array of values.
func parsePath(path string) (segments, query *ast.Term, err error) {
	u, err := url.Parse(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: request.path %q: %v", ErrInput, path, err)
	}
	p := strings.TrimLeft(u.Path, "/")
	n := strings.Count(p, "/") + 1
	segs := make([]*ast.Term, 0, n)
	for {
		i := strings.IndexByte(p, '/')
		if i < 0 {
			segs = append(segs, ast.StringTerm(p))
			break
		}
		segs = append(segs, ast.StringTerm(p[:i]))
		p = p[i+1:]
	}
	if u.RawQuery == "" {
		return ast.ArrayTerm(segs...), ast.ObjectTerm(), nil
	}
	q := u.Query()
	items := make([][2]*ast.Term, 0, len(q))
	for name, values := range q {
		vs := make([]*ast.Term, len(values))
		for i, v := range values {
			vs[i] = ast.StringTerm(v)
		}
		items = append(items, ast.Item(ast.StringTerm(name), ast.ArrayTerm(vs...)))
	}
	return ast.ArrayTerm(segs...), ast.ObjectTerm(items...), nil
}

// parseBody returns parsed_body and truncated_body as opa-envoy-plugin
// computes them: a JSON body (content-type containing application/json) is
// parsed unless content-length says it was truncated; anything else gives
// null.
func parseBody(bag attributes.Bag) (*ast.Term, bool, error) {
	hv, _ := bag.Get(attributes.RequestHeaders)
	headers := hv.StringMapValue()
	ct, ok := headers.Get("content-type")
	if !ok || !strings.Contains(ct, "application/json") {
		return ast.InternedNullTerm, false, nil
	}
	bv, _ := bag.Get(attributes.RequestBody)
	body := bv.StringValue()
	if body == "" {
		return ast.InternedNullTerm, false, nil
	}
	if cl, ok := headers.Get("content-length"); ok {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("%w: content-length %q: %v", ErrInput, cl, err)
		}
		if n != -1 && n > int64(len(body)) {
			return ast.InternedNullTerm, true, nil
		}
	}
	var doc any
	if err := util.UnmarshalJSON([]byte(body), &doc); err != nil {
		return nil, false, fmt.Errorf("%w: request body: %v", ErrInput, err)
	}
	v, err := ast.InterfaceToValue(doc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: request body: %v", ErrInput, err)
	}
	return ast.NewTerm(v), false, nil
}

// mixerObject builds input.mixer_attributes: attribute name → value.
func mixerObject(bag attributes.Bag, needs *inputNeeds) *ast.Term {
	items := make([][2]*ast.Term, 0, bag.Len())
	for name, v := range bag.All() {
		if !needs.mixerAll && !needs.mixer[name] {
			continue
		}
		items = append(items, ast.Item(strTerm(name), valueTerm(v)))
	}
	return ast.ObjectTerm(items...)
}

// valueTerm converts one attribute value; docs/policy.md lists the forms.
func valueTerm(v attributes.Value) *ast.Term {
	switch v.Kind() {
	case attributes.KindString:
		return strTerm(v.StringValue())
	case attributes.KindInt64:
		return ast.InternedTerm(v.Int64Value())
	case attributes.KindDouble:
		f := v.DoubleValue()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return ast.StringTerm(strconv.FormatFloat(f, 'g', -1, 64))
		}
		return ast.NewTerm(ast.Number(strconv.FormatFloat(f, 'g', -1, 64)))
	case attributes.KindBool:
		return ast.InternedTerm(v.BoolValue())
	case attributes.KindBytes:
		return ast.StringTerm(base64.StdEncoding.EncodeToString(v.BytesValue()))
	case attributes.KindTimestamp:
		return ast.StringTerm(v.TimeValue().Format(time.RFC3339Nano))
	case attributes.KindDuration:
		return ast.StringTerm(v.DurationValue().String())
	case attributes.KindStringMap:
		return stringMapObject(v.StringMapValue())
	case attributes.KindIPAddress:
		ip, _ := v.IPValue()
		return ast.StringTerm(ip.String())
	}
	return ast.InternedNullTerm
}

// formatTimestamp writes t as protojson writes a google.protobuf.Timestamp:
// UTC, "Z", and 0, 3, 6 or 9 fractional digits.
func formatTimestamp(t time.Time) string {
	t = t.UTC()
	ns := t.Nanosecond()
	switch {
	case ns == 0:
		return t.Format("2006-01-02T15:04:05Z")
	case ns%1e6 == 0:
		return t.Format("2006-01-02T15:04:05.000Z")
	case ns%1e3 == 0:
		return t.Format("2006-01-02T15:04:05.000000Z")
	}
	return t.Format("2006-01-02T15:04:05.000000000Z")
}
