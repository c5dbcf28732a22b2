//go:build !sidecar

package main

import "syscall"

// childAttr puts a demo child in its own process group and has the kernel
// kill it if the demo dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
