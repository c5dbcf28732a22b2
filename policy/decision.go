package policy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// Decision is the outcome of one policy evaluation. A Decision is not
// modified after Eval returns it and may be shared read-only.
type Decision struct {
	// ID identifies the decision in the decision log.
	ID string
	// Allowed reports whether the request may proceed. An undefined
	// decision (no rule produced a value) is a denial.
	Allowed bool
	// HTTPStatus is the object decision's http_status; 0 when the policy
	// did not set one (callers answer 403 to a denial then).
	HTTPStatus int
	// Body is the object decision's body, the response body of a denial.
	Body string
	// Headers are the object decision's headers: added to the upstream
	// request when allowed, to the local reply when denied. Sorted by key;
	// the values of one key keep the policy's order.
	Headers []HeaderValue
	// ResponseHeadersToAdd are added to the response sent downstream when
	// the request is allowed.
	ResponseHeadersToAdd []HeaderValue
	// RequestHeadersToRemove are removed from the upstream request when the
	// request is allowed.
	RequestHeadersToRemove []string
	// DynamicMetadata is the object decision's dynamic_metadata (JSON
	// numbers as json.Number), nil when unset.
	DynamicMetadata map[string]any
	// Referenced lists the attributes the decision depended on: any bag
	// that agrees with this one on them gets the same decision.
	Referenced []Reference
	// Cacheable reports whether the decision may be cached under
	// Referenced for ValidDuration and ValidUseCount uses.
	Cacheable     bool
	ValidDuration time.Duration
	ValidUseCount int32

	// memo holds callers' renderings of a decision the cache stores; the
	// copies the cache hands out share it. Nil for any other decision.
	memo *memo
}

// Render slots: each API that renders decisions has its own.
const (
	RenderMixer = iota
	RenderExtAuthz
	renderSlots
)

// memo is a cached decision's renderings, one per slot.
type memo struct {
	slots [renderSlots]atomic.Pointer[rendering]
}

type rendering struct {
	key uint64
	v   any
}

// Rendered returns what SetRendered stored in slot under key, nil when
// nothing or something under another key is stored there. A rendering is
// kept only with a decision held by the decision cache, so that every
// answer the cache serves reuses it; the values must be immutable. It is
// safe for concurrent use.
func (d *Decision) Rendered(slot int, key uint64) any {
	if d.memo == nil {
		return nil
	}
	if r := d.memo.slots[slot].Load(); r != nil && r.key == key {
		return r.v
	}
	return nil
}

// SetRendered stores v, the caller's rendering of d for key (say, the
// peer's global word count), in slot, replacing any other. It does nothing
// when d is not held by the decision cache. v must not depend on anything
// but d and key (in particular not on d.ID, which differs per answer) and
// must never be modified afterwards. It is safe for concurrent use.
func (d *Decision) SetRendered(slot int, key uint64, v any) {
	if d.memo != nil {
		d.memo.slots[slot].Store(&rendering{key: key, v: v})
	}
}

// HeaderValue is one header of a decision.
type HeaderValue struct {
	Key   string
	Value string
}

// Reference is one attribute a decision depended on.
type Reference struct {
	// Name is the attribute name.
	Name string
	// MapKey is the key of a string-map attribute the decision read; ""
	// means the whole value.
	MapKey string
	// Present reports whether the attribute (or map key) was in the bag: a
	// cache matches on its exact value when present (EXACT) and on its
	// absence otherwise (ABSENCE).
	Present bool
}

// decisionKeys are the object-decision keys Remora understands; any other
// key is ignored, as opa-envoy-plugin ignores it.
const (
	keyAllowed                = "allowed"
	keyHeaders                = "headers"
	keyResponseHeadersToAdd   = "response_headers_to_add"
	keyRequestHeadersToRemove = "request_headers_to_remove"
	keyBody                   = "body"
	keyHTTPStatus             = "http_status"
	keyDynamicMetadata        = "dynamic_metadata"
	keyValidDuration          = "valid_duration"
	keyValidUseCount          = "valid_use_count"
	keyCacheable              = "cacheable"
)

// decisionOverrides carries the cache settings an object decision may set.
type decisionOverrides struct {
	validDuration    time.Duration
	hasValidDuration bool
	validUseCount    int32
	hasValidUseCount bool
	notCacheable     bool
}

// decodeDecision interprets the query's value as opa-envoy-plugin does: a
// boolean, or an object with a boolean "allowed" and optional headers,
// response_headers_to_add, request_headers_to_remove, body, http_status and
// dynamic_metadata; plus Remora's valid_duration, valid_use_count and
// cacheable.
func decodeDecision(v any, d *Decision) (decisionOverrides, error) {
	var o decisionOverrides
	switch v := v.(type) {
	case bool:
		d.Allowed = v
		return o, nil
	case map[string]any:
		return o, decodeObjectDecision(v, d, &o)
	}
	return o, fmt.Errorf("%w: the decision must be a boolean or an object, not %s", ErrDecision, jsonType(v))
}

func decodeObjectDecision(m map[string]any, d *Decision, o *decisionOverrides) error {
	av, ok := m[keyAllowed]
	if !ok {
		return fmt.Errorf("%w: object decision has no %q key", ErrDecision, keyAllowed)
	}
	allowed, ok := av.(bool)
	if !ok {
		return fmt.Errorf("%w: %q must be a boolean, not %s", ErrDecision, keyAllowed, jsonType(av))
	}
	d.Allowed = allowed
	var err error
	if d.Headers, err = decodeHeaders(keyHeaders, m[keyHeaders]); err != nil {
		return err
	}
	if d.ResponseHeadersToAdd, err = decodeHeaders(keyResponseHeadersToAdd, m[keyResponseHeadersToAdd]); err != nil {
		return err
	}
	if v, ok := m[keyRequestHeadersToRemove]; ok {
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%w: %q must be an array of strings, not %s", ErrDecision, keyRequestHeadersToRemove, jsonType(v))
		}
		d.RequestHeadersToRemove = make([]string, len(arr))
		for i, e := range arr {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("%w: %s[%d] must be a string, not %s", ErrDecision, keyRequestHeadersToRemove, i, jsonType(e))
			}
			d.RequestHeadersToRemove[i] = s
		}
	}
	if v, ok := m[keyBody]; ok {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%w: %q must be a string, not %s", ErrDecision, keyBody, jsonType(v))
		}
		d.Body = s
	}
	if v, ok := m[keyHTTPStatus]; ok {
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%w: %q must be a number, not %s", ErrDecision, keyHTTPStatus, jsonType(v))
		}
		code, err := n.Int64()
		if err != nil || code < 100 || code > 599 || http.StatusText(int(code)) == "" {
			return fmt.Errorf("%w: invalid %s %s", ErrDecision, keyHTTPStatus, n)
		}
		d.HTTPStatus = int(code)
	}
	if v, ok := m[keyDynamicMetadata]; ok {
		md, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: %q must be an object, not %s", ErrDecision, keyDynamicMetadata, jsonType(v))
		}
		d.DynamicMetadata = md
	}
	if v, ok := m[keyValidDuration]; ok {
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%w: %q must be a duration string like \"30s\", not %s", ErrDecision, keyValidDuration, jsonType(v))
		}
		dur, err := time.ParseDuration(s)
		if err != nil || dur < 0 {
			return fmt.Errorf("%w: invalid %s %q: want a non-negative duration like \"30s\"", ErrDecision, keyValidDuration, s)
		}
		o.validDuration, o.hasValidDuration = dur, true
	}
	if v, ok := m[keyValidUseCount]; ok {
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%w: %q must be a number, not %s", ErrDecision, keyValidUseCount, jsonType(v))
		}
		c, err := n.Int64()
		if err != nil || c < 0 || c > 1<<31-1 {
			return fmt.Errorf("%w: invalid %s %s: want an integer in [0, 2147483647]", ErrDecision, keyValidUseCount, n)
		}
		o.validUseCount, o.hasValidUseCount = int32(c), true
	}
	if v, ok := m[keyCacheable]; ok {
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%w: %q must be a boolean, not %s", ErrDecision, keyCacheable, jsonType(v))
		}
		o.notCacheable = !b
	}
	return nil
}

// decodeHeaders reads a headers value: an object whose values are strings
// or arrays of strings, or an array of such objects.
func decodeHeaders(field string, v any) ([]HeaderValue, error) {
	if v == nil {
		return nil, nil
	}
	var out []HeaderValue
	addObject := func(m map[string]any) error {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			switch val := m[k].(type) {
			case string:
				out = append(out, HeaderValue{Key: k, Value: val})
			case []any:
				for i, e := range val {
					s, ok := e.(string)
					if !ok {
						return fmt.Errorf("%w: %s[%q][%d] must be a string, not %s", ErrDecision, field, k, i, jsonType(e))
					}
					out = append(out, HeaderValue{Key: k, Value: s})
				}
			default:
				return fmt.Errorf("%w: %s[%q] must be a string or an array of strings, not %s", ErrDecision, field, k, jsonType(val))
			}
		}
		return nil
	}
	switch v := v.(type) {
	case map[string]any:
		if err := addObject(v); err != nil {
			return nil, err
		}
	case []any:
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: %s[%d] must be an object, not %s", ErrDecision, field, i, jsonType(e))
			}
			if err := addObject(m); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w: %q must be an object or an array of objects, not %s", ErrDecision, field, jsonType(v))
	}
	return out, nil
}

// jsonType names the JSON type of a decoded value for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64, int, int64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// ReferencedAttributes encodes d.Referenced for a CheckResponse to a peer
// that knows globalWordCount global words: EXACT for attributes present in
// the bag, ABSENCE for absent ones, map_key for string-map keys. A map_key
// of 0 means "no key" on the wire, so a key that is global word 0 is sent
// as a local word instead.
func (d *Decision) ReferencedAttributes(globalWordCount uint32) *mixerv1.ReferencedAttributes {
	enc := attributes.NewWordEncoder(globalWordCount)
	out := &mixerv1.ReferencedAttributes{AttributeMatches: make([]*mixerv1.ReferencedAttributes_AttributeMatch, 0, len(d.Referenced))}
	var zeroKeyed []*mixerv1.ReferencedAttributes_AttributeMatch
	var zeroWord string
	for _, r := range d.Referenced {
		m := &mixerv1.ReferencedAttributes_AttributeMatch{
			Name:      enc.Index(r.Name),
			Condition: mixerv1.ReferencedAttributes_ABSENCE,
		}
		if r.Present {
			m.Condition = mixerv1.ReferencedAttributes_EXACT
		}
		if r.MapKey != "" {
			m.MapKey = enc.Index(r.MapKey)
			if m.MapKey == 0 {
				zeroKeyed = append(zeroKeyed, m)
				zeroWord = r.MapKey
			}
		}
		out.AttributeMatches = append(out.AttributeMatches, m)
	}
	out.Words = slices.Clone(enc.Words())
	if len(zeroKeyed) > 0 {
		idx := slices.Index(out.Words, zeroWord)
		if idx < 0 {
			out.Words = append(out.Words, zeroWord)
			idx = len(out.Words) - 1
		}
		for _, m := range zeroKeyed {
			m.MapKey = -int32(idx) - 1
		}
	}
	return out
}

// RouteDirective returns the header operations and direct response the
// proxy applies for d, or nil when there are none. When allowed: headers
// replace request headers (a header with several values is replaced by the
// first and the others appended), request_headers_to_remove removes, and
// response_headers_to_add appends to the response. When denied: headers go
// onto the local reply, whose code is http_status (403 when only a body is
// set) and whose body is body.
func (d *Decision) RouteDirective() *mixerv1.RouteDirective {
	rd := &mixerv1.RouteDirective{}
	if d.Allowed {
		rd.RequestHeaderOperations = headerOps(d.Headers, nil)
		for _, name := range d.RequestHeadersToRemove {
			rd.RequestHeaderOperations = append(rd.RequestHeaderOperations,
				&mixerv1.HeaderOperation{Name: name, Operation: mixerv1.HeaderOperation_REMOVE})
		}
		for _, h := range d.ResponseHeadersToAdd {
			rd.ResponseHeaderOperations = append(rd.ResponseHeaderOperations,
				&mixerv1.HeaderOperation{Name: h.Key, Value: h.Value, Operation: mixerv1.HeaderOperation_APPEND})
		}
	} else {
		rd.ResponseHeaderOperations = headerOps(d.Headers, nil)
		if d.HTTPStatus != 0 || d.Body != "" {
			rd.DirectResponseCode = uint32(d.HTTPStatus)
			if rd.DirectResponseCode == 0 {
				rd.DirectResponseCode = http.StatusForbidden
			}
			rd.DirectResponseBody = d.Body
		}
	}
	if len(rd.RequestHeaderOperations) == 0 && len(rd.ResponseHeaderOperations) == 0 && rd.DirectResponseCode == 0 {
		return nil
	}
	return rd
}

// headerOps turns headers into REPLACE operations, APPEND for the second
// and later values of one name.
func headerOps(hs []HeaderValue, ops []*mixerv1.HeaderOperation) []*mixerv1.HeaderOperation {
	seen := make(map[string]bool, len(hs))
	for _, h := range hs {
		op := mixerv1.HeaderOperation_REPLACE
		lk := strings.ToLower(h.Key)
		if seen[lk] {
			op = mixerv1.HeaderOperation_APPEND
		}
		seen[lk] = true
		ops = append(ops, &mixerv1.HeaderOperation{Name: h.Key, Value: h.Value, Operation: op})
	}
	return ops
}
