# Object decisions: headers for the upstream, response headers, headers to
# remove, dynamic metadata, and a custom status and body on denial.
package envoy.authz

default allow := {
	"allowed": false,
	"http_status": 401,
	"body": "missing or unknown api key\n",
	"headers": {"www-authenticate": "ApiKey"},
}

tenants := {"k-123": "acme", "k-456": "globex"}

allow := {
	"allowed": true,
	"headers": {"x-tenant": tenant, "x-tags": ["a", "b"]},
	"response_headers_to_add": {"x-checked-by": "remora"},
	"request_headers_to_remove": ["x-api-key"],
	"dynamic_metadata": {"tenant": tenant, "weight": 3},
	"valid_duration": "30s",
	"valid_use_count": 50,
} if {
	tenant := tenants[input.attributes.request.http.headers["x-api-key"]]
}
