# The benchmark's RBAC policy, in the opa-envoy-plugin style, evaluated
# unchanged by `remora mixer` (Mixer Check and ext_authz Check) and by
# `opa run --server` (REST). The x-user header names the caller;
# data.rbac.bindings maps users to roles and data.rbac.roles maps roles to
# the methods and path globs they may use.
package envoy.authz

default allow := false

user := input.attributes.request.http.headers["x-user"]

allow if {
	some role in data.rbac.bindings[user]
	some grant in data.rbac.roles[role]
	grant.method == input.attributes.request.http.method
	glob.match(grant.path, ["/"], input.attributes.request.http.path)
}
