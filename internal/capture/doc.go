// Package capture generates and applies the iptables rules that send a
// workload's TCP traffic through the Remora sidecar, as Istio's
// istio-iptables does for Envoy: outbound connections are REDIRECTed to
// the proxy's virtual outbound listener (15001), inbound ones to its
// inbound capture listener (15006). The proxy recovers each connection's
// original destination with the original_dst listener filter.
//
// Data enters as a Config (ParseFlags and the Parse* helpers turn
// command-line values into one, with errors naming the flag and the bad
// value); Plan turns it into a Script, a pure value listing the exact
// commands (an iptables-restore ruleset, or one iptables command per
// rule), which String renders as a shell script (remora iptables
// --dry-run) and Run executes. Cleanup plans the removal of every rule and
// chain, and tolerates their absence, so both are idempotent.
//
// Everything lives in the nat table in four chains: REMORA_OUTPUT (jumped
// to from OUTPUT), REMORA_REDIRECT, REMORA_INBOUND (from PREROUTING) and
// REMORA_IN_REDIRECT.
package capture
