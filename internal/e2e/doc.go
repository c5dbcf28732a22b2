// Package e2e is the end-to-end suite: it builds the remora binary once and
// drives real processes (remora mixer, remora proxy, remora
// sample-upstream) on free loopback ports with real clients, checking the
// whole path of the mission from the outside. It has no non-test code.
package e2e
