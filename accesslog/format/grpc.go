package format

import (
	"strings"

	"github.com/remora-mesh/remora/proxy/filter"
)

// grpcCamelNames and grpcSnakeNames are the renderings of the well-known
// gRPC status codes (Envoy's CAMEL_STRING and SNAKE_STRING).
var grpcCamelNames = [...]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated",
}

var grpcSnakeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// IsGRPCRequest reports whether the request headers carry a gRPC content
// type ("application/grpc" or "application/grpc+...", "application/grpc;...").
func IsGRPCRequest(h *filter.HeaderMap) bool {
	ct, ok := h.Get("content-type")
	if !ok {
		return false
	}
	const p = "application/grpc"
	if len(ct) < len(p) || !strings.EqualFold(ct[:len(p)], p) {
		return false
	}
	return len(ct) == len(p) || ct[len(p)] == '+' || ct[len(p)] == ';'
}

// GRPCStatus returns the stream's gRPC status as Envoy determines it for
// logging: grpc-status from the response trailers, else from the response
// headers (a trailers-only response), else inferred from the HTTP response
// code. ok is false for a non-gRPC request or when nothing is known. An
// unparsable grpc-status header is treated as absent.
func GRPCStatus(info *filter.StreamInfo) (code uint64, ok bool) {
	if !IsGRPCRequest(info.RequestHeaders) {
		return 0, false
	}
	return GRPCResponseStatus(info)
}

// GRPCResponseStatus is GRPCStatus without the check that the request was
// a gRPC request (Envoy's grpc_status_filter does not check it).
func GRPCResponseStatus(info *filter.StreamInfo) (code uint64, ok bool) {
	if c, ok := parseGRPCStatus(info.ResponseTrailers); ok {
		return c, true
	}
	if c, ok := parseGRPCStatus(info.ResponseHeaders); ok {
		return c, true
	}
	if info.ResponseCode == 0 {
		return 0, false
	}
	return HTTPToGRPCStatus(info.ResponseCode), true
}

func parseGRPCStatus(h *filter.HeaderMap) (uint64, bool) {
	s, ok := h.Get("grpc-status")
	if !ok || s == "" || len(s) > 10 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// HTTPToGRPCStatus maps an HTTP status to a gRPC code as the gRPC HTTP/2
// specification (and Envoy) does.
func HTTPToGRPCStatus(code int) uint64 {
	switch code {
	case 400:
		return 13 // Internal
	case 401:
		return 16 // Unauthenticated
	case 403:
		return 7 // PermissionDenied
	case 404:
		return 12 // Unimplemented
	case 429, 502, 503, 504:
		return 14 // Unavailable
	}
	return 2 // Unknown
}

// GRPCStatusName returns the CAMEL_STRING name of a well-known code, ""
// for others.
func GRPCStatusName(code uint64) string {
	if code < uint64(len(grpcCamelNames)) {
		return grpcCamelNames[code]
	}
	return ""
}

func (o *operator) grpcStatus(info *filter.StreamInfo) value {
	code, ok := GRPCStatus(info)
	if !ok {
		return value{}
	}
	switch o.grpc {
	case grpcCamel:
		if code < uint64(len(grpcCamelNames)) {
			return value{kind: vString, s: grpcCamelNames[code]}
		}
	case grpcSnake:
		if code < uint64(len(grpcSnakeNames)) {
			return value{kind: vString, s: grpcSnakeNames[code]}
		}
	}
	// Numbers, and names of codes beyond the well-known ones, render as
	// the number (a number in typed JSON only for NUMBER).
	if o.grpc == grpcNumber {
		return uintValue(code)
	}
	return value{kind: vString, s: smallNumber(code)}
}

// smallNumbers avoids allocating for codes rendered as strings.
var smallNumbers = func() [256]string {
	var a [256]string
	for i := range a {
		a[i] = itoa(uint64(i))
	}
	return a
}()

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

func smallNumber(n uint64) string {
	if n < uint64(len(smallNumbers)) {
		return smallNumbers[n]
	}
	return itoa(n)
}
