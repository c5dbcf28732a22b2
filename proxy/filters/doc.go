// Package filters holds the built-in HTTP filters, one package each, every
// one registering its filter.Factory from init(); package all imports the
// standard set.
package filters
