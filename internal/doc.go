// Package internal holds code shared by Remora's packages that is not part of
// its public API: build version, small utilities. Each subpackage states its
// own contract.
package internal
