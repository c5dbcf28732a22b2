package server

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// Check decoding.
//
// As for Report (see mixer.go), the Check handler hands the server's codec
// its own request type, a pooled *checkCall, rather than the generated
// CheckRequest. The codec decodes the request's attributes straight from
// the wire bytes with attributes.CheckDecoder. When that decoder declines
// (quotas, a malformed request, anything it does not decode exactly as
// the generated code would), the codec unmarshals a generated CheckRequest
// with grpc's proto codec, as before: a malformed request fails with the
// very error it always did, at the same point (before the interceptors).
// The interceptors see a *checkCall as the request.
//
// An allowed answer without quotas depends only on the decision and the
// peer's global word count, so for a decision held by the policy's cache
// it is marshalled once (policy.Decision.SetRendered) and every later
// answer from that decision is a *rawResponse, which the codec writes as
// it is.

// checkCall is one Check request as the codec decoded it: bag and gwc,
// or, when the wire decoder declined it, req.
type checkCall struct {
	dec attributes.CheckDecoder
	bag attributes.Bag // valid until release: it lives in dec
	gwc uint32
	req *mixerv1.CheckRequest
}

// checkCalls pools Check requests with their decoders.
var checkCalls = sync.Pool{New: func() any { return new(checkCall) }}

// unmarshal decodes data into c: with the wire decoder, or with the proto
// codec when it declines.
func (c *checkCall) unmarshal(data mem.BufferSlice, codec encoding.CodecV2) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	bag, gwc, ok := c.dec.Decode(buf.ReadOnlyData()) // copies what it keeps
	buf.Free()
	if ok {
		c.bag, c.gwc = bag, gwc
		return nil
	}
	c.req = new(mixerv1.CheckRequest)
	return codec.Unmarshal(data, c.req)
}

// release returns c to the pool; its bag must no longer be used.
func (c *checkCall) release() {
	c.dec.Reset()
	c.bag, c.gwc, c.req = attributes.Bag{}, 0, nil
	checkCalls.Put(c)
}

// rawResponse is a response marshalled once and sent as it is: out holds
// msg's wire form as the codec returns it (grpc only reads the slice and
// frees its SliceBuffer, a no-op). Both are shared by every answer and
// never modified.
type rawResponse struct {
	out mem.BufferSlice
	msg proto.Message
}

// newRawResponse wraps data, the wire form of msg.
func newRawResponse(data []byte, msg proto.Message) *rawResponse {
	return &rawResponse{out: mem.BufferSlice{mem.SliceBuffer(data)}, msg: msg}
}
