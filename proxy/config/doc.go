// Package config is the sidecar's bootstrap configuration: node identity,
// the admin server, listeners with their filter chains and HTTP connection
// managers, route configurations and clusters.
//
// Configuration enters as YAML through Parse (or Load), which decodes it
// strictly (an unknown field is an error naming its path), applies every
// default in one place (ApplyDefaults) and validates it (Validate, which
// reports every problem with its field path, joined by errors.Join). The
// result is plain data: the listener, connection-manager and router
// packages compile it into their runtime structures. Marshal renders a
// configuration back to YAML that parses to the same configuration.
package config
