// Package all registers the standard HTTP filters and access-log sinks by
// importing them for their init side effect. The remora command imports
// it; a filter or sink package added to the standard set is added here.
package all

import (
	_ "github.com/remora-mesh/remora/accesslog"                    // access_log types file and grpc
	_ "github.com/remora-mesh/remora/proxy/filters/extauthz"       // ext_authz
	_ "github.com/remora-mesh/remora/proxy/filters/headermutation" // header_mutation
	_ "github.com/remora-mesh/remora/proxy/filters/mixer"          // mixer
)
