// Package policy evaluates authorization decisions with OPA (Rego).
//
// Rego modules and data documents enter at load time and are compiled and
// prepared once; per request an attribute bag enters, is turned into an
// opa-envoy-plugin compatible input document, and a decision leaves: allowed
// or not, with status, headers and body, plus the attributes the decision
// depended on so that callers can cache it.
package policy
