// Package alsv3 holds the generated Go code for Remora's subset of Envoy's
// envoy.service.accesslog v3 API (the gRPC access-log service). The .proto files beside it mirror
// envoyproxy/data-plane-api's package, message, field names and numbers for
// the parts Remora uses and leave the rest out; `make proto` regenerates the
// .pb.go files with pinned generators. Wire compatibility with
// go-control-plane v1.40.0 is proven by proto/envoy/compat.
package alsv3
