package filter

import (
	"fmt"
	"strings"
)

// ResponseFlags is the set of Envoy response flags a stream ended with. Bits
// are in Envoy's order, which is also the order String prints them in.
type ResponseFlags uint32

// The response flags, with Envoy's short names.
const (
	FailedLocalHealthCheck           ResponseFlags = 1 << iota // LH
	NoHealthyUpstream                                          // UH
	UpstreamRequestTimeout                                     // UT
	LocalReset                                                 // LR
	UpstreamRemoteReset                                        // UR
	UpstreamConnectionFailure                                  // UF
	UpstreamConnectionTermination                              // UC
	UpstreamOverflow                                           // UO
	NoRouteFound                                               // NR
	DelayInjected                                              // DI
	FaultInjected                                              // FI
	RateLimited                                                // RL
	UnauthorizedExternalService                                // UAEX
	RateLimitServiceError                                      // RLSE
	DownstreamConnectionTermination                            // DC
	UpstreamRetryLimitExceeded                                 // URX
	StreamIdleTimeout                                          // SI
	InvalidEnvoyRequestHeaders                                 // IH
	DownstreamProtocolError                                    // DPE
	UpstreamMaxStreamDurationReached                           // UMSDR
	ResponseFromCacheFilter                                    // RFCF
	NoFilterConfigFound                                        // NFCF
	DurationTimeout                                            // DT
	UpstreamProtocolError                                      // UPE
	NoClusterFound                                             // NC
	OverloadManager                                            // OM
	DNSResolutionFailed                                        // DF
	DropOverload                                               // DO
	lastResponseFlag
)

var flagNames = [...]string{
	"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
	"DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO",
}

// flagStrings caches the rendering of every single flag so that String
// allocates nothing for the common case of zero or one flag.
var flagStrings = func() map[ResponseFlags]string {
	m := make(map[ResponseFlags]string, len(flagNames))
	for i, n := range flagNames {
		m[1<<i] = n
	}
	return m
}()

// String renders the flags as Envoy does: short names joined by commas, or
// "-" when there are none.
func (f ResponseFlags) String() string {
	if f == 0 {
		return "-"
	}
	if s, ok := flagStrings[f]; ok {
		return s
	}
	var b strings.Builder
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// Has reports whether every flag of g is set in f.
func (f ResponseFlags) Has(g ResponseFlags) bool { return f&g == g && g != 0 }

// ParseResponseFlag returns the flag with Envoy's short name s ("UH", "UF" ...).
func ParseResponseFlag(s string) (ResponseFlags, error) {
	for i, n := range flagNames {
		if n == s {
			return 1 << i, nil
		}
	}
	return 0, fmt.Errorf("filter: unknown response flag %q", s)
}

// ResponseFlagNames lists every short name in Envoy's order.
func ResponseFlagNames() []string { return append([]string(nil), flagNames[:]...) }
