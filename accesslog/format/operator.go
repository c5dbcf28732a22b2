package format

import (
	"errors"
	"math"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/remora-mesh/remora/proxy/filter"
)

// opKind identifies an operator.
type opKind uint8

const (
	opStartTime opKind = iota + 1
	opReq
	opResp
	opTrailer
	opResponseCode
	opResponseCodeDetails
	opResponseFlags
	opBytesReceived
	opBytesSent
	opDuration
	opRequestDuration
	opResponseDuration
	opResponseTxDuration
	opUpstreamHost
	opUpstreamCluster
	opUpstreamLocalAddress
	opUpstreamTransportFailureReason
	opDownstreamRemoteAddress
	opDownstreamRemoteAddressWithoutPort
	opDownstreamLocalAddress
	opDownstreamLocalAddressWithoutPort
	opDownstreamDirectRemoteAddress
	opDownstreamDirectRemoteAddressWithoutPort
	opDownstreamPeerURISAN
	opProtocol
	opRequestedServerName
	opRouteName
	opHostname
	opDynamicMetadata
	opGRPCStatus
	opGRPCStatusNumber
)

// syntax says which parts an operator accepts.
type syntax uint8

const (
	commandOnly    syntax = iota // %NAME%
	paramsRequired               // %NAME(x)%, with an optional :max_length
	paramsOptional               // %NAME% or %NAME(x)%
)

type opSpec struct {
	kind   opKind
	syntax syntax
}

// operators lists every supported command.
var operators = map[string]opSpec{
	"START_TIME":                             {opStartTime, paramsOptional},
	"REQ":                                    {opReq, paramsRequired},
	"RESP":                                   {opResp, paramsRequired},
	"TRAILER":                                {opTrailer, paramsRequired},
	"RESPONSE_CODE":                          {opResponseCode, commandOnly},
	"RESPONSE_CODE_DETAILS":                  {opResponseCodeDetails, commandOnly},
	"RESPONSE_FLAGS":                         {opResponseFlags, commandOnly},
	"BYTES_RECEIVED":                         {opBytesReceived, commandOnly},
	"BYTES_SENT":                             {opBytesSent, commandOnly},
	"DURATION":                               {opDuration, commandOnly},
	"REQUEST_DURATION":                       {opRequestDuration, commandOnly},
	"RESPONSE_DURATION":                      {opResponseDuration, commandOnly},
	"RESPONSE_TX_DURATION":                   {opResponseTxDuration, commandOnly},
	"UPSTREAM_HOST":                          {opUpstreamHost, commandOnly},
	"UPSTREAM_CLUSTER":                       {opUpstreamCluster, commandOnly},
	"UPSTREAM_LOCAL_ADDRESS":                 {opUpstreamLocalAddress, commandOnly},
	"UPSTREAM_TRANSPORT_FAILURE_REASON":      {opUpstreamTransportFailureReason, commandOnly},
	"DOWNSTREAM_REMOTE_ADDRESS":              {opDownstreamRemoteAddress, commandOnly},
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": {opDownstreamRemoteAddressWithoutPort, commandOnly},
	"DOWNSTREAM_LOCAL_ADDRESS":               {opDownstreamLocalAddress, commandOnly},
	"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":  {opDownstreamLocalAddressWithoutPort, commandOnly},
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS":       {opDownstreamDirectRemoteAddress, commandOnly},
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": {opDownstreamDirectRemoteAddressWithoutPort, commandOnly},
	"DOWNSTREAM_PEER_URI_SAN":                       {opDownstreamPeerURISAN, commandOnly},
	"PROTOCOL":                                      {opProtocol, commandOnly},
	"REQUESTED_SERVER_NAME":                         {opRequestedServerName, commandOnly},
	"ROUTE_NAME":                                    {opRouteName, commandOnly},
	"HOSTNAME":                                      {opHostname, commandOnly},
	"DYNAMIC_METADATA":                              {opDynamicMetadata, paramsRequired},
	"GRPC_STATUS":                                   {opGRPCStatus, paramsOptional},
	"GRPC_STATUS_NUMBER":                            {opGRPCStatusNumber, commandOnly},
}

// OperatorNames returns the supported operator names, sorted, for
// documentation and tests.
func OperatorNames() []string {
	names := make([]string, 0, len(operators))
	for n := range operators {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// grpcStatusStyle is how %GRPC_STATUS(...)% renders a code.
type grpcStatusStyle uint8

const (
	grpcCamel grpcStatusStyle = iota
	grpcSnake
	grpcNumber
)

// operator is one compiled command.
type operator struct {
	kind    opKind
	maxLen  int // -1: no truncation
	header  string
	altHdr  string   // REQ(X?Y): Y
	mdNS    string   // DYNAMIC_METADATA namespace
	mdPath  []string // keys below the namespace
	tf      *timeFormat
	grpc    grpcStatusStyle
	literal string // HOSTNAME
}

var errUnknown = errors.New("unknown operator")

func newOperator(name, params string, hasParams bool, maxLen int) (*operator, error) {
	spec, ok := operators[name]
	if !ok {
		return nil, errUnknown
	}
	op := &operator{kind: spec.kind, maxLen: maxLen}
	switch spec.syntax {
	case commandOnly:
		if hasParams {
			return nil, errors.New("takes no parameters")
		}
		if maxLen >= 0 {
			return nil, errors.New("takes no maximum length")
		}
	case paramsRequired:
		if !hasParams || params == "" {
			return nil, errors.New("requires a parameter in parentheses")
		}
	case paramsOptional:
		if maxLen >= 0 {
			return nil, errors.New("takes no maximum length")
		}
	}
	switch spec.kind {
	case opReq, opResp, opTrailer:
		main, alt, hasAlt := strings.Cut(params, "?")
		if main == "" || hasAlt && alt == "" {
			return nil, errors.New("header names must not be empty (use X or X?Y)")
		}
		if strings.Contains(alt, "?") {
			return nil, errors.New("more than one alternative header")
		}
		if err := checkHeaderName(main); err != nil {
			return nil, err
		}
		if hasAlt {
			if err := checkHeaderName(alt); err != nil {
				return nil, err
			}
		}
		op.header = strings.ToLower(main)
		op.altHdr = strings.ToLower(alt)
	case opDynamicMetadata:
		parts := strings.Split(params, ":")
		for _, p := range parts {
			if p == "" {
				return nil, errors.New("metadata path parts must not be empty (use NAMESPACE:KEY)")
			}
		}
		op.mdNS, op.mdPath = parts[0], parts[1:]
	case opStartTime:
		tf, err := compileTime(params)
		if err != nil {
			return nil, err
		}
		op.tf = tf
	case opGRPCStatus:
		switch params {
		case "", "CAMEL_STRING":
			op.grpc = grpcCamel
		case "SNAKE_STRING":
			op.grpc = grpcSnake
		case "NUMBER":
			op.grpc = grpcNumber
		default:
			return nil, errors.New("format must be CAMEL_STRING, SNAKE_STRING or NUMBER")
		}
	case opGRPCStatusNumber:
		op.kind, op.grpc = opGRPCStatus, grpcNumber
	case opHostname:
		op.literal = hostname()
	}
	return op, nil
}

func checkHeaderName(n string) error {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' || c == '(' || c == ')' {
			return errors.New("invalid header name " + quote(n))
		}
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }

// valueKind tells how a value renders in text, JSON and typed JSON.
type valueKind uint8

const (
	vUnset  valueKind = iota
	vString           // s
	vBytes            // b (in scratch)
	vInt              // i; a number in typed JSON
	vUint             // u; a number in typed JSON
	vFloat            // f; a number in typed JSON
	vBool             // t
	vNull             // explicit null (metadata)
	vJSON             // b holds a JSON document (metadata maps and lists)
)

// value is an operator's result. It refers to info's strings or to scratch
// memory and is valid only until the next evaluation. It is kept small
// (32 bytes): every operator of every line returns one.
type value struct {
	kind valueKind
	// s is the text of vString, and the bytes of vBytes and vJSON viewed
	// as a string (see bytesValue).
	s string
	// n holds vInt (int64 bits), vUint, vFloat (float64 bits) and vBool
	// (0 or 1).
	n uint64
}

// bytesValue returns a value of kind (vBytes or vJSON) over b without
// copying; b must not change while the value is in use (scratch memory
// changes only at the next evaluation).
func bytesValue(kind valueKind, b []byte) value {
	return value{kind: kind, s: unsafe.String(unsafe.SliceData(b), len(b))}
}

func intValue(i int64) value     { return value{kind: vInt, n: uint64(i)} }
func uintValue(u uint64) value   { return value{kind: vUint, n: u} }
func floatValue(f float64) value { return value{kind: vFloat, n: math.Float64bits(f)} }
func (v *value) int() int64      { return int64(v.n) }
func (v *value) float() float64  { return math.Float64frombits(v.n) }
func (v *value) bool() bool      { return v.n != 0 }
func boolValue(t bool) value {
	if t {
		return value{kind: vBool, n: 1}
	}
	return value{kind: vBool}
}

func str(s string) value {
	if s == "" {
		return value{}
	}
	return value{kind: vString, s: s}
}

func ms(d time.Duration) value {
	if d <= 0 {
		return value{}
	}
	return intValue(d.Milliseconds())
}

func (o *operator) eval(info *filter.StreamInfo, sc *scratch) value {
	v := o.evalRaw(info, sc)
	if o.maxLen >= 0 {
		switch v.kind {
		case vString, vBytes:
			if len(v.s) > o.maxLen {
				v.s = v.s[:o.maxLen]
			}
		}
	}
	return v
}

func (o *operator) evalRaw(info *filter.StreamInfo, sc *scratch) value {
	switch o.kind {
	case opStartTime:
		if info.StartTime.IsZero() {
			return value{}
		}
		sc.b = o.tf.append(sc.b[:0], info.StartTime)
		return bytesValue(vBytes, sc.b)
	case opReq:
		return header(info.RequestHeaders, o.header, o.altHdr)
	case opResp:
		return header(info.ResponseHeaders, o.header, o.altHdr)
	case opTrailer:
		return header(info.ResponseTrailers, o.header, o.altHdr)
	case opResponseCode:
		return intValue(int64(info.ResponseCode))
	case opResponseCodeDetails:
		return str(info.ResponseCodeDetails)
	case opResponseFlags:
		return responseFlags(info.ResponseFlags, sc)
	case opBytesReceived:
		return uintValue(info.BytesReceived)
	case opBytesSent:
		return uintValue(info.BytesSent)
	case opDuration:
		return ms(info.Duration())
	case opRequestDuration:
		return ms(info.LastDownstreamRxByteReceived)
	case opResponseDuration:
		return ms(info.FirstUpstreamRxByteReceived)
	case opResponseTxDuration:
		if info.FirstUpstreamRxByteReceived <= 0 || info.LastDownstreamTxByteSent <= 0 {
			return value{}
		}
		return intValue((info.LastDownstreamTxByteSent - info.FirstUpstreamRxByteReceived).Milliseconds())
	case opUpstreamHost:
		return str(info.UpstreamHost)
	case opUpstreamCluster:
		return str(info.UpstreamCluster)
	case opUpstreamLocalAddress:
		return str(info.UpstreamLocalAddress)
	case opUpstreamTransportFailureReason:
		return str(info.UpstreamTransportFailureReason)
	case opDownstreamRemoteAddress:
		return addrPort(info.DownstreamRemoteAddress, true, sc)
	case opDownstreamRemoteAddressWithoutPort:
		return addrPort(info.DownstreamRemoteAddress, false, sc)
	case opDownstreamLocalAddress:
		return addrPort(info.DownstreamLocalAddress, true, sc)
	case opDownstreamLocalAddressWithoutPort:
		return addrPort(info.DownstreamLocalAddress, false, sc)
	case opDownstreamDirectRemoteAddress:
		return addrPort(info.DownstreamDirectRemoteAddress, true, sc)
	case opDownstreamDirectRemoteAddressWithoutPort:
		return addrPort(info.DownstreamDirectRemoteAddress, false, sc)
	case opDownstreamPeerURISAN:
		return str(info.DownstreamPeerURISAN)
	case opProtocol:
		return str(info.Protocol)
	case opRequestedServerName:
		return str(info.RequestedServerName)
	case opRouteName:
		return str(info.RouteName)
	case opHostname:
		return str(o.literal)
	case opDynamicMetadata:
		return o.metadata(info, sc)
	case opGRPCStatus:
		return o.grpcStatus(info)
	}
	return value{}
}

// flagNames are the response flags' short names in bit order.
var flagNames = filter.ResponseFlagNames()

// responseFlags renders flags as ResponseFlags.String does ("UF,URX", or
// "-" when none) without allocating.
func responseFlags(f filter.ResponseFlags, sc *scratch) value {
	if f == 0 {
		return value{kind: vString, s: "-"}
	}
	sc.b = sc.b[:0]
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if len(sc.b) > 0 {
				sc.b = append(sc.b, ',')
			}
			sc.b = append(sc.b, n...)
		}
	}
	return bytesValue(vBytes, sc.b)
}

func header(h *filter.HeaderMap, name, alt string) value {
	if v, ok := h.Get(name); ok {
		return value{kind: vString, s: v}
	}
	if alt != "" {
		if v, ok := h.Get(alt); ok {
			return value{kind: vString, s: v}
		}
	}
	return value{}
}
