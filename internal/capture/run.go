package capture

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Exec runs one command with stdin and returns its combined output.
type Exec func(ctx context.Context, name string, args []string, stdin string) ([]byte, error)

// OSExec runs commands with os/exec, found on $PATH.
func OSExec(ctx context.Context, name string, args []string, stdin string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// RestoreAvailable reports whether iptables-restore (and ip6tables-restore
// when ipv6) are on $PATH, so Plan can use Restore mode.
func RestoreAvailable(ipv6 bool) bool {
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		return false
	}
	if ipv6 {
		if _, err := exec.LookPath("ip6tables-restore"); err != nil {
			return false
		}
	}
	return true
}

// Run runs s in order with run (OSExec when nil). A failing command stops
// it with an error naming the command and its output, unless the command
// is marked IgnoreError.
func Run(ctx context.Context, s Script, run Exec) error {
	if run == nil {
		run = OSExec
	}
	for _, c := range s {
		out, err := run(ctx, c.Name, c.Args, c.Stdin)
		if err != nil && !c.IgnoreError {
			line := strings.TrimSuffix(Script{{Name: c.Name, Args: c.Args}}.String(), "\n")
			return fmt.Errorf("capture: %s: %w: %s", line, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
