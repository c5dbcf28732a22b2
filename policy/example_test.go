package policy_test

import (
	"context"
	"fmt"

	"github.com/remora-mesh/remora/attributes"
	"github.com/remora-mesh/remora/policy"
)

// The embedded default policy: GET is allowed, /admin needs the admin
// role, DELETE is denied with 405. Each decision says which attributes it
// depended on, so that a sidecar can cache it.
func ExampleEngine_Eval() {
	ctx := context.Background()
	e, err := policy.New(ctx, policy.DefaultConfig(), policy.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()

	for _, req := range []struct{ method, path, role string }{
		{"GET", "/products/1", ""},
		{"GET", "/admin/users", "viewer"},
		{"GET", "/admin/users", "admin"},
		{"DELETE", "/products/1", ""},
	} {
		bd := attributes.NewBuilder(3)
		bd.Set(attributes.RequestMethod, attributes.String(req.method))
		bd.Set(attributes.RequestPath, attributes.String(req.path))
		if req.role != "" {
			bd.Set(attributes.RequestHeaders, attributes.StringMapValue(
				attributes.StringMapOf(map[string]string{"x-user-role": req.role})))
		}
		d, err := e.Eval(ctx, bd.Build())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s %s role=%q: allowed=%v status=%d cacheable=%v\n", req.method, req.path, req.role, d.Allowed, d.HTTPStatus, d.Cacheable)
	}
	d, _ := e.Eval(ctx, attributes.Bag{})
	for _, r := range d.Referenced {
		fmt.Printf("references %s[%s] present=%v\n", r.Name, r.MapKey, r.Present)
	}
	// Output:
	// GET /products/1 role="": allowed=true status=0 cacheable=true
	// GET /admin/users role="viewer": allowed=false status=403 cacheable=true
	// GET /admin/users role="admin": allowed=true status=0 cacheable=true
	// DELETE /products/1 role="": allowed=false status=405 cacheable=true
	// references request.headers[content-type] present=false
	// references request.headers[x-user-role] present=false
	// references request.method[] present=false
	// references request.path[] present=false
}
