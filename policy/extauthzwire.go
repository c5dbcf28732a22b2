package policy

import (
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/remora-mesh/remora/attributes"
)

// Field numbers of the ext_authz v3 messages the decoder reads, from
// envoy/service/auth/v3/{external_auth,attribute_context}.proto and
// envoy/config/core/v3/address.proto.
const (
	crAttributes = 1 // CheckRequest.attributes

	acSource            = 1  // AttributeContext.source
	acDestination       = 2  // AttributeContext.destination
	acRequest           = 4  // AttributeContext.request
	acContextExtensions = 10 // AttributeContext.context_extensions
	acMetadataContext   = 11 // AttributeContext.metadata_context
	acTLSSession        = 12 // AttributeContext.tls_session
	acRouteMetadata     = 13 // AttributeContext.route_metadata_context

	peerAddress     = 1 // Peer.address
	peerService     = 2
	peerLabels      = 3
	peerPrincipal   = 4
	peerCertificate = 5

	addrSocket = 1 // Address.socket_address (oneof)

	saProtocol = 1 // SocketAddress.protocol
	saAddress  = 2
	saPort     = 3 // port_value (oneof port_specifier)

	reqTime = 1 // Request.time
	reqHTTP = 2

	httpID        = 1
	httpMethod    = 2
	httpHeaders   = 3
	httpPath      = 4
	httpHost      = 5
	httpScheme    = 6
	httpQuery     = 7
	httpFragment  = 8
	httpSize      = 9
	httpProtocol  = 10
	httpBody      = 11
	httpRawBody   = 12
	httpHeaderMap = 13

	tlsSNI = 1 // TLSSession.sni

	tsSeconds = 1 // google.protobuf.Timestamp
	tsNanos   = 2
)

// CheckRequestDecoder builds the bag BagFromCheckRequest builds, straight
// from the wire bytes of an envoy.service.auth.v3.CheckRequest: no
// generated types, no Go maps, one copy of the request per call once its
// buffers have grown. It is an accelerator for the requests Envoy
// usually sends, not a second source of truth: it declines (ok false)
// every request it cannot decode exactly as proto.Unmarshal followed by
// BagFromCheckRequest would, and the caller then takes that path, whose
// errors are the ones to report. It declines malformed wire data, invalid
// UTF-8 in a string field, any field number the decoder does not know (in
// any message), a known field with an unexpected wire type, a message
// field that occurs twice (protobuf merges the occurrences), non-empty
// metadata contexts, addresses other than socket
// addresses with a port value, and timestamps with unknown fields.
//
// The zero CheckRequestDecoder is ready to use; it is not safe for
// concurrent use.
type CheckRequestDecoder struct {
	bd        attributes.Builder
	headers   []attributes.KV // request headers, before they become a map
	labels    []attributes.KV // source labels
	dstLabels []attributes.KV
	exts      []attributes.KV
	hmap      []attributes.KV // header_map entries, keys lower-cased
}

// wireReq is what one request's fields decode to, before the bag is built.
type wireReq struct {
	src, dst                   wirePeer
	sni                        string
	hasHTTP, hasTime           bool
	seconds                    int64
	nanos                      int32
	id, method, path, host     string
	scheme, protocol, body     string
	size                       int64
	headers, exts, hmap        []attributes.KV
	seenHeaderMap              bool
	srcLabels, dstLabels       []attributes.KV
	seenSrc, seenDst, seenReq  bool
	seenTLS, seenHTTP, seenTim bool
}

type wirePeer struct {
	ip        string
	port      uint32
	principal string
	seenAddr  bool
}

// Decode decodes the CheckRequest in data into the bag BagFromCheckRequest
// would build from it. ok is false when the decoder declines (see
// CheckRequestDecoder); the caller then unmarshals the request.
//
// Ownership: data is copied once and not retained. The Bag is valid until
// the decoder's next Decode or Reset (its entries and string maps live in
// the decoder's storage); strings taken from it are immutable and may be
// kept.
func (c *CheckRequestDecoder) Decode(data []byte) (bag attributes.Bag, ok bool) {
	c.Reset()
	s := string(data)
	var r wireReq
	r.headers, r.exts = c.headers[:0], c.exts[:0]
	r.srcLabels, r.dstLabels = c.labels[:0], c.dstLabels[:0]
	r.hmap = c.hmap[:0]
	seen := false
	okDec := decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
		if num != crAttributes || typ != protowire.BytesType || seen {
			return false // attributes occurring twice are merged by protobuf
		}
		seen = true
		return r.attributeContext(v)
	})
	// Keep the grown slices for the next request.
	c.headers, c.exts = r.headers[:0], r.exts[:0]
	c.labels, c.dstLabels = r.srcLabels[:0], r.dstLabels[:0]
	c.hmap = r.hmap[:0]
	if !okDec {
		return attributes.Bag{}, false
	}
	return c.build(&r), true
}

// Reset forgets the last request (its Bag becomes invalid) and keeps the
// buffers for the next one.
func (c *CheckRequestDecoder) Reset() {
	c.bd.Reset(attributes.Bag{})
	clear(c.headers[:cap(c.headers)])
	clear(c.exts[:cap(c.exts)])
	clear(c.labels[:cap(c.labels)])
	clear(c.dstLabels[:cap(c.dstLabels)])
	clear(c.hmap[:cap(c.hmap)])
}

// unsafeBytes is s's bytes, read only.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// build sets what BagFromCheckRequest sets, in the same way.
func (c *CheckRequestDecoder) build(r *wireReq) attributes.Bag {
	bd := &c.bd
	setString := func(name, v string) {
		if v != "" {
			bd.Set(name, attributes.String(v))
		}
	}
	setMap := func(name string, kvs []attributes.KV) attributes.StringMap {
		if len(kvs) == 0 {
			return attributes.StringMap{}
		}
		m := attributes.NewStringMap(append(bd.KVs(len(kvs)), kvs...))
		bd.Set(name, attributes.StringMapValue(m))
		return m
	}
	peer := func(p *wirePeer, labels []attributes.KV, ip, port, principal, labelsName string) {
		if p.seenAddr {
			if addr, err := netip.ParseAddr(p.ip); err == nil {
				bd.Set(ip, attributes.IPAddress(addr))
			}
			if p.port != 0 {
				bd.Set(port, attributes.Int64(int64(p.port)))
			}
		}
		setString(principal, p.principal)
		setMap(labelsName, labels)
	}
	peer(&r.src, r.srcLabels, attributes.SourceIP, attributes.SourcePort, attributes.SourcePrincipal, attributes.SourceLabels)
	peer(&r.dst, r.dstLabels, attributes.DestinationIP, attributes.DestinationPort, attributes.DestinationPrincipal, attributes.DestinationLabels)
	if r.hasTime {
		bd.Set(attributes.RequestTime, attributes.Timestamp(time.Unix(r.seconds, int64(r.nanos)).UTC()))
	}
	setString(attributes.RequestID, r.id)
	setString(attributes.RequestMethod, r.method)
	setString(attributes.RequestPath, r.path)
	if p := r.path; p != "" {
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		setString(attributes.RequestURLPath, p)
	}
	setString(attributes.RequestHost, r.host)
	setString(attributes.RequestScheme, r.scheme)
	setString(attributes.RequestProtocol, r.protocol)
	if r.size != 0 {
		bd.Set(attributes.RequestSize, attributes.Int64(r.size))
	}
	headers := r.headers
	if len(headers) == 0 && len(r.hmap) > 0 {
		headers = attributes.JoinRepeated(r.hmap) // as headersFromMap joins them
	}
	hm := setMap(attributes.RequestHeaders, headers)
	ua, _ := hm.Get("user-agent")
	setString(attributes.RequestUserAgent, ua)
	setString(attributes.RequestBody, r.body)
	if r.hasHTTP {
		proto := attributes.ProtocolHTTP
		if ct, _ := hm.Get("content-type"); strings.HasPrefix(ct, "application/grpc") {
			proto = attributes.ProtocolGRPC
		}
		bd.Set(attributes.ContextProtocol, attributes.String(proto))
	}
	setMap(attributes.ContextExtensions, r.exts)
	setString(attributes.ConnectionRequestedServerName, r.sni)
	return bd.Build()
}

// attributeContext decodes an AttributeContext.
func (r *wireReq) attributeContext(s string) bool {
	return decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
		if typ != protowire.BytesType {
			return false
		}
		switch num {
		case acSource:
			if r.seenSrc {
				return false
			}
			r.seenSrc = true
			return r.src.decode(v, &r.srcLabels)
		case acDestination:
			if r.seenDst {
				return false
			}
			r.seenDst = true
			return r.dst.decode(v, &r.dstLabels)
		case acRequest:
			if r.seenReq {
				return false
			}
			r.seenReq = true
			return r.request(v)
		case acContextExtensions:
			return appendMapEntry(&r.exts, v)
		case acMetadataContext, acRouteMetadata:
			return v == "" // read by no attribute; validated only on the general path
		case acTLSSession:
			if r.seenTLS {
				return false
			}
			r.seenTLS = true
			return decodeMessage(v, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
				if num != tlsSNI || typ != protowire.BytesType || !utf8.ValidString(v) {
					return false
				}
				r.sni = v
				return true
			})
		}
		return false
	})
}

// decode decodes a Peer; its labels are appended to *labels.
func (p *wirePeer) decode(s string, labels *[]attributes.KV) bool {
	return decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
		if typ != protowire.BytesType {
			return false
		}
		switch num {
		case peerAddress:
			if p.seenAddr {
				return false
			}
			p.seenAddr = true
			return p.address(v)
		case peerLabels:
			return appendMapEntry(labels, v)
		case peerPrincipal:
			p.principal = v
			return utf8.ValidString(v)
		case peerService, peerCertificate:
			return utf8.ValidString(v)
		}
		return false
	})
}

// address decodes an Address holding a SocketAddress.
func (p *wirePeer) address(s string) bool {
	seen := false
	return decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
		if num != addrSocket || typ != protowire.BytesType || seen {
			return false
		}
		seen = true
		return decodeMessage(v, func(num protowire.Number, typ protowire.Type, v string, n uint64) bool {
			switch {
			case num == saProtocol && typ == protowire.VarintType:
				return true
			case num == saAddress && typ == protowire.BytesType:
				p.ip = v
				return utf8.ValidString(v)
			case num == saPort && typ == protowire.VarintType:
				p.port = uint32(n)
				return true
			}
			return false
		})
	})
}

// request decodes an AttributeContext.Request.
func (r *wireReq) request(s string) bool {
	return decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
		if typ != protowire.BytesType {
			return false
		}
		switch num {
		case reqTime:
			if r.seenTim {
				return false
			}
			r.seenTim = true
			if !decodeMessage(v, func(num protowire.Number, typ protowire.Type, _ string, n uint64) bool {
				switch {
				case num == tsSeconds && typ == protowire.VarintType:
					r.seconds = int64(n)
				case num == tsNanos && typ == protowire.VarintType:
					r.nanos = int32(n)
				default:
					return false
				}
				return true
			}) {
				return false
			}
			// timestamppb's IsValid: within years 1 to 9999, nanos in [0, 1e9).
			r.hasTime = r.seconds >= -62135596800 && r.seconds <= 253402300799 && r.nanos >= 0 && r.nanos < 1e9
			return true
		case reqHTTP:
			if r.seenHTTP {
				return false
			}
			r.seenHTTP, r.hasHTTP = true, true
			return r.http(v)
		}
		return false
	})
}

// http decodes an AttributeContext.HttpRequest.
func (r *wireReq) http(s string) bool {
	return decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, n uint64) bool {
		if num == httpSize {
			r.size = int64(n)
			return typ == protowire.VarintType
		}
		if typ != protowire.BytesType {
			return false
		}
		var dst *string
		switch num {
		case httpID:
			dst = &r.id
		case httpMethod:
			dst = &r.method
		case httpHeaders:
			return appendMapEntry(&r.headers, v)
		case httpPath:
			dst = &r.path
		case httpHost:
			dst = &r.host
		case httpScheme:
			dst = &r.scheme
		case httpQuery, httpFragment:
		case httpProtocol:
			dst = &r.protocol
		case httpBody:
			dst = &r.body
		case httpRawBody:
			return true // bytes: no validation, no attribute
		case httpHeaderMap:
			if r.seenHeaderMap {
				return false // merged occurrences: the general path
			}
			r.seenHeaderMap = true
			return decodeMessage(v, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
				if num != 1 || typ != protowire.BytesType { // HeaderMap.headers
					return false
				}
				return appendHeaderValue(&r.hmap, v)
			})
		default:
			return false
		}
		if !utf8.ValidString(v) {
			return false
		}
		if dst != nil {
			*dst = v
		}
		return true
	})
}

// appendHeaderValue decodes an envoy.config.core.v3.HeaderValue onto *kvs
// as headersFromMap reads it: the key lower-cased, the value, or the raw
// value when the value is empty.
func appendHeaderValue(kvs *[]attributes.KV, s string) bool {
	var key, value, raw string
	if !decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
		if typ != protowire.BytesType {
			return false
		}
		switch num {
		case 1:
			key = v
		case 2:
			value = v
		case 3:
			raw = v // bytes: no UTF-8 validation
			return true
		default:
			return false
		}
		return utf8.ValidString(v)
	}) {
		return false
	}
	if value == "" {
		value = raw
	}
	*kvs = append(*kvs, attributes.KV{Key: strings.ToLower(key), Value: value})
	return true
}

// appendMapEntry decodes a map<string, string> entry onto *kvs; a missing
// key or value is "", as protobuf decodes it.
func appendMapEntry(kvs *[]attributes.KV, s string) bool {
	var kv attributes.KV
	if !decodeMessage(s, func(num protowire.Number, typ protowire.Type, v string, _ uint64) bool {
		if typ != protowire.BytesType || !utf8.ValidString(v) {
			return false
		}
		switch num {
		case 1:
			kv.Key = v
		case 2:
			kv.Value = v
		default:
			return false
		}
		return true
	}) {
		return false
	}
	*kvs = append(*kvs, kv)
	return true
}

// decodeMessage walks the fields of the message in s, calling f with each
// field's number, wire type, and its bytes (BytesType) or value
// (VarintType). Any other wire type, malformed data, or f returning false
// stops the walk with false. Strings passed to f share s.
func decodeMessage(s string, f func(num protowire.Number, typ protowire.Type, v string, n uint64) bool) bool {
	b := unsafeBytes(s)
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return false
		}
		off += n
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b[off:])
			if n < 0 {
				return false
			}
			off += n
			if !f(num, typ, "", v) {
				return false
			}
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b[off:])
			if n < 0 {
				return false
			}
			start := off + n - len(v)
			off += n
			if !f(num, typ, s[start:off], 0) {
				return false
			}
		default:
			return false
		}
	}
	return true
}
