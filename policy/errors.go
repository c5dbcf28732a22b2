package policy

import "errors"

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrInput means the request could not be turned into an input
	// document (an unparsable path or JSON body, as in opa-envoy-plugin).
	ErrInput = errors.New("policy: bad input")
	// ErrDecision means the policy produced a value that is not a valid
	// decision (neither a boolean nor an object with a boolean "allowed").
	ErrDecision = errors.New("policy: invalid decision")
	// ErrEval means OPA failed to evaluate the policy.
	ErrEval = errors.New("policy: evaluation failed")
	// ErrLoad means the policy could not be loaded or compiled.
	ErrLoad = errors.New("policy: load failed")
	// ErrNotReady means no policy has compiled yet.
	ErrNotReady = errors.New("policy: no policy loaded")
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("policy: engine closed")
)
