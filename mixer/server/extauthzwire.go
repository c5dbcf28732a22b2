package server

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/policy"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
)

// ext_authz Check decoding.
//
// As for the Mixer Check (see checkwire.go), the ext_authz Check handler
// hands the server's codec a pooled *authzCall rather than the generated
// CheckRequest. The codec builds the request's attribute bag straight from
// the wire bytes with policy.CheckRequestDecoder; when that decoder
// declines (non-empty metadata contexts, a malformed request, anything
// it does not decode exactly as the generated code would), the codec
// unmarshals a generated CheckRequest with grpc's proto codec, as before,
// and the bag comes from policy.BagFromCheckRequest: a malformed request
// fails with the very error it always did, at the same point (before the
// interceptors). The interceptors see an *authzCall as the request.

// authzCall is one ext_authz Check request as the codec decoded it: bag,
// or, when the wire decoder declined it, req.
type authzCall struct {
	dec policy.CheckRequestDecoder
	bag attributes.Bag // valid until release: it lives in dec
	req *authv3.CheckRequest
}

// authzCalls pools ext_authz Check requests with their decoders.
var authzCalls = sync.Pool{New: func() any { return new(authzCall) }}

// unmarshal decodes data into c: with the wire decoder, or with the proto
// codec when it declines.
func (c *authzCall) unmarshal(data mem.BufferSlice, codec encoding.CodecV2) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	bag, ok := c.dec.Decode(buf.ReadOnlyData()) // copies what it keeps
	buf.Free()
	if ok {
		c.bag = bag
		return nil
	}
	c.req = new(authv3.CheckRequest)
	return codec.Unmarshal(data, c.req)
}

// attributes is the request's bag, whichever path decoded it.
func (c *authzCall) attributes() attributes.Bag {
	if c.req != nil {
		return policy.BagFromCheckRequest(c.req)
	}
	return c.bag
}

// release returns c to the pool; its bag must no longer be used.
func (c *authzCall) release() {
	c.dec.Reset()
	c.bag, c.req = attributes.Bag{}, nil
	authzCalls.Put(c)
}
