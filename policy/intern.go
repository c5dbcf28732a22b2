package policy

import (
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/remora-mesh/remora/attributes"
)

// commonStrings are header names and values that recur on every request;
// their terms are built once and shared (OPA never mutates input terms).
var commonStrings = []string{
	":authority", ":method", ":path", ":scheme", ":status",
	"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
	"connection", "content-length", "content-type", "cookie", "host", "origin", "pragma",
	"referer", "te", "user-agent", "x-b3-parentspanid", "x-b3-sampled", "x-b3-spanid",
	"x-b3-traceid", "x-envoy-attempt-count", "x-envoy-expected-rq-timeout-ms",
	"x-envoy-internal", "x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-proto",
	"x-request-id", "traceparent", "tracestate", "grpc-timeout", "grpc-encoding",
	"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
	"http", "https", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3",
	"application/json", "application/grpc", "*/*", "trailers", "keep-alive", "close",
}

// commonTerms holds the terms of commonStrings and of every attribute
// name of the vocabulary (the keys of input.mixer_attributes).
var commonTerms = func() map[string]*ast.Term {
	m := make(map[string]*ast.Term, len(commonStrings)+len(attributes.Vocabulary)+3)
	for _, s := range commonStrings {
		m[s] = ast.StringTerm(s)
	}
	for name := range attributes.Vocabulary {
		m[name] = ast.StringTerm(name)
	}
	for _, name := range []string{attributes.RequestProtocol, attributes.RequestBody, attributes.ContextExtensions} {
		m[name] = ast.StringTerm(name)
	}
	return m
}()

// strTerm returns a string term, shared for common strings.
func strTerm(s string) *ast.Term {
	if t, ok := commonTerms[s]; ok {
		return t
	}
	return ast.InternedTerm(s)
}
