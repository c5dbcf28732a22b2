//go:build !linux && !sidecar

package main

import "syscall"

// childAttr puts a demo child in its own process group.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
