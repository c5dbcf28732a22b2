package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/remora-mesh/remora/internal/capture"
)

func init() {
	register(&command{name: "iptables", summary: "install or remove the traffic-capture rules (init container)", run: runIPTables})
}

const iptablesUsage = `[flags]

Installs the nat rules that send the pod's TCP traffic through the sidecar,
as Istio's istio-iptables does: outbound connections are redirected to
--proxy-port (the proxy's use_original_dst listener), inbound ones to
--inbound-capture-port; connections of --proxy-uid/--proxy-gid are not
redirected. Earlier rules are removed first, so running it twice is safe.
It uses one atomic iptables-restore run per family when iptables-restore is
installed, one iptables command per rule otherwise. --dry-run prints the
exact commands it would run here as a shell script instead; --cleanup removes every rule and
chain (it succeeds when there is nothing to remove). Needs NET_ADMIN and
NET_RAW. See docs/operations.md, "Traffic capture".`

func runIPTables(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("iptables", iptablesUsage, stderr)
	f := capture.DefaultFlags()
	fs.StringVar(&f.ProxyPort, "proxy-port", f.ProxyPort, "`port` outbound connections are redirected to")
	fs.StringVar(&f.InboundCapturePort, "inbound-capture-port", f.InboundCapturePort, "`port` inbound connections are redirected to")
	fs.StringVar(&f.ProxyUID, "proxy-uid", f.ProxyUID, "comma-separated `uids` of the proxy, whose connections are not redirected")
	fs.StringVar(&f.ProxyGID, "proxy-gid", "", "comma-separated `gids` of the proxy (default: the --proxy-uid values)")
	fs.StringVar(&f.IncludeInboundPorts, "include-inbound-ports", f.IncludeInboundPorts, "inbound `ports` to capture, comma-separated; * for all, empty for none")
	fs.StringVar(&f.ExcludeInboundPorts, "exclude-inbound-ports", f.ExcludeInboundPorts, "inbound `ports` never captured")
	fs.StringVar(&f.ExcludeOutboundPorts, "exclude-outbound-ports", "", "outbound destination `ports` never captured")
	fs.StringVar(&f.IncludeOutboundCIDRs, "include-outbound-cidrs", f.IncludeOutboundCIDRs, "outbound destination `CIDRs` to capture; * for all, empty for none")
	fs.StringVar(&f.ExcludeOutboundCIDRs, "exclude-outbound-cidrs", "", "outbound destination `CIDRs` never captured")
	fs.BoolVar(&f.IPv6, "ipv6", false, "also install the rules for IPv6 with ip6tables")
	dryRun := fs.Bool("dry-run", false, "print the commands instead of running them")
	cleanup := fs.Bool("cleanup", false, "remove the rules and chains instead of installing them")
	restore := fs.Bool("restore", true, "use iptables-restore when it is installed (false: one command per rule)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	var script capture.Script
	if *cleanup {
		script = capture.Cleanup(f.IPv6)
	} else {
		cfg, err := capture.ParseFlags(f)
		if err != nil {
			return &usageError{msg: err.Error()}
		}
		mode := capture.Individual
		if *restore && capture.RestoreAvailable(f.IPv6) {
			mode = capture.Restore
		}
		script = capture.Plan(&cfg, mode)
	}
	if *dryRun {
		_, err := io.WriteString(stdout, script.String())
		return err
	}
	tool := "iptables"
	if _, err := exec.LookPath(tool); err != nil {
		return fmt.Errorf("%s not found: install it, or print the commands with --dry-run: %w", tool, err)
	}
	if err := capture.Run(ctx, script, nil); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("%w (is ip6tables installed for --ipv6?)", err)
		}
		return err
	}
	what := "installed"
	if *cleanup {
		what = "removed"
	}
	fmt.Fprintf(stdout, "remora iptables: capture rules %s\n", what)
	return nil
}
