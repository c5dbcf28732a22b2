# Remora's default policy, used by `remora mixer` when no policy is
# configured. It is an ordinary opa-envoy-plugin policy:
#
#   - DELETE is denied everywhere (405, with an Allow header);
#   - paths under /admin need the header x-user-role: admin (403);
#   - GET and HEAD are allowed to everything else, and so are gRPC calls
#     (content-type application/grpc...) outside /admin;
#   - any other method is denied (the decision's allowed is false).
#
# Its decisions depend on request.method, request.path and the
# x-user-role and content-type keys of request.headers only, so they are
# cacheable.
package envoy.authz

default allow := {"allowed": false}

method := input.attributes.request.http.method

admin_path if input.parsed_path[0] == "admin"

is_admin if input.attributes.request.http.headers["x-user-role"] == "admin"

allow := {
	"allowed": false,
	"http_status": 405,
	"body": "method DELETE is not allowed\n",
	"headers": {"allow": "GET, HEAD"},
} if {
	method == "DELETE"
}

allow := {
	"allowed": false,
	"http_status": 403,
	"body": "admin role required\n",
} if {
	method != "DELETE"
	admin_path
	not is_admin
}

is_grpc if startswith(input.attributes.request.http.headers["content-type"], "application/grpc")

allow := {"allowed": true, "headers": {"x-remora-policy": "default"}} if {
	method in {"GET", "HEAD"}
	not admin_path
}

allow := {"allowed": true, "headers": {"x-remora-policy": "default"}} if {
	method == "POST"
	is_grpc
	not admin_path
}

allow := {"allowed": true, "headers": {"x-remora-policy": "default"}} if {
	method != "DELETE"
	admin_path
	is_admin
}
