// Package server is `remora mixer`: the central policy and telemetry
// server.
//
// A Server listens on two sockets. The gRPC socket (default :9091) serves
// istio.mixer.v1.Mixer Check and Report, envoy.service.auth.v3.Authorization
// Check (Envoy's ext_authz), envoy.service.accesslog.v3.AccessLogService
// StreamAccessLogs, grpc.health.v1.Health and server reflection.
// The monitoring socket (default :15014) serves /metrics, /healthz,
// /readyz and, when enabled, /debug/pprof.
//
// Check requests are decompressed into an attribute bag (attributes
// package), evaluated by the policy engine (policy package), charged
// against quotas (mixer/quota) and answered with the decision's status,
// cacheability, referenced attributes and route directive. Report batches
// are read from grpc's receive buffer, checked whole, and the attributes the
// metrics read are fed to the telemetry pipeline (mixer/telemetry),
// whose metrics leave through /metrics with the server's own. Envoy
// access-log entries take the same path: each becomes a report bag
// (accesslog/als.HTTPAttributes, TCPAttributes) recorded by telemetry.
//
// Every unary RPC passes two interceptors: one counts it in the
// go-grpc-middleware metric convention, the other bounds the requests in
// flight and answers RESOURCE_EXHAUSTED instead of queueing.
package server
