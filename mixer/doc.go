// Package mixer is the root of Remora's policy and telemetry server
// (`remora mixer`) and of the client the sidecar uses to reach it.
//
// Requests enter as istio.mixer.v1 Check and Report calls (and Envoy
// ext_authz / access-log service calls) over gRPC. Check attributes are
// decompressed into an attribute bag and evaluated by the policy package;
// the decision leaves as a CheckResponse with the referenced attributes that
// make it cacheable. Report batches are decompressed into bags and leave as
// Prometheus metrics.
package mixer
