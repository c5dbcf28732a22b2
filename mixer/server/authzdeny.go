package server

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/policy"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
)

// Denied ext_authz answers.
//
// A denial's CheckResponse names the per-answer decision ID in its status
// message, so it cannot be marshalled once as an allowed answer is. All
// the rest of it (the status code, denied_response, dynamic_metadata)
// depends on the decision only: for a decision held by the policy's cache
// that rest is marshalled once (deniedRendering), and each answer is the
// status, written with the answer's own ID, followed by those bytes
// (deniedAnswer). Status is CheckResponse field 1, the first field
// proto.Marshal writes, so the bytes are what proto.Marshal would give.

// Field numbers of CheckResponse.status and google.rpc.Status.
const (
	authzRespStatus   = 1
	rpcStatusCode     = 1
	rpcStatusMessage  = 2
	denyMessagePrefix = "mixer: denied by policy"
)

// deniedRendering is a cached denial's answer but for its status: rest is
// the wire form of the CheckResponse without status, code the status code.
// Shared by every answer of the decision and never modified.
type deniedRendering struct {
	rest []byte
	code int32
}

// newDeniedRendering renders resp, the answer of d, for reuse. resp is
// not modified.
func newDeniedRendering(resp *authv3.CheckResponse) (*deniedRendering, error) {
	rest := &authv3.CheckResponse{HttpResponse: resp.HttpResponse, DynamicMetadata: resp.DynamicMetadata}
	data, err := proto.Marshal(rest)
	if err != nil {
		return nil, err
	}
	return &deniedRendering{rest: data, code: resp.GetStatus().GetCode()}, nil
}

// deniedAnswer is one answer of a cached denial: the codec writes it from
// r and d's ID (see marshal), into small when it fits.
type deniedAnswer struct {
	r     *deniedRendering
	d     *policy.Decision
	out   [1]mem.Buffer
	small [deniedSmall]byte
}

// deniedSmall is the size of the answers written inside the deniedAnswer
// itself, with no allocation of their own (a typical denial is under 100
// bytes).
const deniedSmall = 192

// appendDenyMessage appends denyMessage(d) to b.
func appendDenyMessage(b []byte, d *policy.Decision) []byte {
	b = append(b, denyMessagePrefix...)
	if d.ID != "" {
		b = append(b, " (decision "...)
		b = append(b, d.ID...)
		b = append(b, ')')
	}
	if d.Body != "" {
		b = append(b, ": "...)
		b = append(b, d.Body...)
	}
	return b
}

// denyMessageLen is len(denyMessage(d)).
func denyMessageLen(d *policy.Decision) int {
	n := len(denyMessagePrefix)
	if d.ID != "" {
		n += len(" (decision ") + len(d.ID) + 1
	}
	if d.Body != "" {
		n += 2 + len(d.Body)
	}
	return n
}

// marshal writes the answer, into a.small when it fits; the result refers
// to a, which must not be reused.
func (a *deniedAnswer) marshal() mem.BufferSlice {
	msgLen := denyMessageLen(a.d)
	statusLen := 0
	if a.r.code != 0 {
		statusLen += 1 + protowire.SizeVarint(uint64(int64(a.r.code)))
	}
	statusLen += 1 + protowire.SizeBytes(msgLen)
	n := 1 + protowire.SizeBytes(statusLen) + len(a.r.rest)
	var b []byte
	if n <= len(a.small) {
		b = a.small[:0:n]
	} else {
		b = make([]byte, 0, n)
	}
	b = protowire.AppendTag(b, authzRespStatus, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(statusLen))
	if a.r.code != 0 {
		b = protowire.AppendTag(b, rpcStatusCode, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(a.r.code)))
	}
	b = protowire.AppendTag(b, rpcStatusMessage, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(msgLen))
	b = appendDenyMessage(b, a.d)
	b = append(b, a.r.rest...)
	a.out[0] = mem.SliceBuffer(b)
	return a.out[:]
}
