package policy

import _ "embed"

// DefaultPolicy is the example policy `remora mixer` serves when no policy
// is configured (policy/default.rego, documented in docs/policy.md): GET
// and HEAD are allowed, paths under /admin need x-user-role: admin, DELETE
// is denied with 405. Its query is DefaultQuery.
//
//go:embed default.rego
var DefaultPolicy string

// DefaultPolicyFile is the module name DefaultConfig gives DefaultPolicy.
const DefaultPolicyFile = "remora/default.rego"

// DefaultConfig returns a configuration serving DefaultPolicy, with
// defaults applied.
func DefaultConfig() Config {
	c := Config{Modules: map[string]string{DefaultPolicyFile: DefaultPolicy}}
	c.ApplyDefaults()
	return c
}
