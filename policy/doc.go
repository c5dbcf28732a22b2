// Package policy evaluates authorization decisions with OPA (Rego).
//
// Rego modules, JSON/YAML data documents and OPA bundles enter at load time
// (New, and again on every hot reload): they are parsed (Rego v1, or v0 for
// modules written before OPA 1.0), compiled, analysed and prepared once,
// then swapped in atomically. A policy that fails to load never replaces
// the serving one.
//
// Per request an attribute bag enters Engine.Eval — from a Mixer Check, or
// from an Envoy ext_authz request through BagFromCheckRequest — and is
// turned directly into an opa-envoy-plugin compatible input document made
// of OPA AST values (only the parts the policy reads). A Decision leaves:
// allowed or not, with status, headers and body as opa-envoy-plugin
// interprets them, plus the attributes the decision depended on — derived
// by static analysis of the compiled policy — so that callers can cache it
// (Decision.ReferencedAttributes, Decision.RouteDirective give the
// istio.mixer.v1 forms).
//
// docs/policy.md describes the input document, the decision, the
// cacheability rules, hot reload, the decision log and the metrics.
package policy
