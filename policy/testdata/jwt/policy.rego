# Allows requests by the role claim of a bearer token. The token is decoded,
# not verified: Envoy's jwt_authn filter (or Remora's) verified it before
# the check, which is the usual split with opa-envoy-plugin.
package envoy.authz

default allow := false

claims := payload if {
	auth := input.attributes.request.http.headers.authorization
	startswith(auth, "Bearer ")
	[_, payload, _] := io.jwt.decode(substring(auth, 7, -1))
}

allow if claims.role == "admin"

allow if {
	input.attributes.request.http.method in {"GET", "HEAD"}
	claims.role == "reader"
}
