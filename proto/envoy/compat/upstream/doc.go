// Package upstream holds the go-control-plane half of the compatibility
// proof of proto/envoy/compat. Its tests import only go-control-plane's
// Envoy types (never Remora's, whose full proto names are the same) and
// meet the other half through the golden files in ../testdata. Its
// end-to-end test runs `remora mixer` as a separate process and calls its
// ext_authz and access-log services with go-control-plane's gRPC stubs.
package upstream
