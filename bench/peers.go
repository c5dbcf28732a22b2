package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Pinned Go-built peers. fortio newer than v1.68.2 does not build with this
// machine's toolchain; opa v1.22.2 is the OPA version Remora embeds.
const (
	fortioModule = "fortio.org/fortio@v1.68.2"
	opaModule    = "github.com/open-policy-agent/opa@v1.22.2"
	caddyModule  = "github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9"
)

// debPeer is a peer installed from Debian: the package is downloaded with
// `apt-get download` and unpacked with `dpkg -x` into the cache, together
// with the shared libraries it needs that the machine lacks, so that nothing
// is installed system-wide and no service is started.
type debPeer struct {
	name, pkg, path string // path inside the unpacked root
}

var debPeers = []debPeer{
	{"nginx", "nginx", "usr/sbin/nginx"},
	{"haproxy", "haproxy", "usr/sbin/haproxy"},
	{"wrk", "wrk", "usr/bin/wrk"},
	{"h2load", "nghttp2-client", "usr/bin/h2load"},
}

type goPeer struct{ name, module string }

var goPeers = []goPeer{
	{"fortio", fortioModule},
	{"opa", opaModule},
	{"caddy", caddyModule},
}

// peers holds the installed peers' paths and versions.
type peers struct {
	cache    string
	root     string            // unpacked Debian packages
	path     map[string]string // peer name -> executable
	version  map[string]string // peer name -> version line
	missing  map[string]string // peer name -> why it is not available
	env      []string          // environment for Debian peers (LD_LIBRARY_PATH)
	commands []string          // the install commands that ran
}

func (p *peers) has(name string) bool { _, ok := p.path[name]; return ok }

// installPeers finds or installs every peer into cache. A peer that cannot
// be installed is recorded in missing, and the scenarios that need it are
// reported as not measured.
func installPeers(ctx context.Context, cache string, need map[string]bool, logf func(string, ...any)) *peers {
	p := &peers{
		cache:   cache,
		root:    filepath.Join(cache, "root"),
		path:    map[string]string{},
		version: map[string]string{},
		missing: map[string]string{},
	}
	libs := []string{
		filepath.Join(p.root, "usr/lib", runtime.GOARCH+"-linux-gnu"),
		filepath.Join(p.root, "lib", runtime.GOARCH+"-linux-gnu"),
		filepath.Join(p.root, "usr/lib/x86_64-linux-gnu"),
	}
	p.env = []string{"LD_LIBRARY_PATH=" + strings.Join(libs, ":")}

	var toFetch []debPeer
	for _, d := range debPeers {
		if !need[d.name] {
			continue
		}
		if _, err := os.Stat(filepath.Join(p.root, d.path)); err != nil {
			toFetch = append(toFetch, d)
		}
	}
	if len(toFetch) > 0 {
		logf("installing from Debian into %s: %v", p.root, pkgNames(toFetch))
		if err := p.fetchDebs(ctx, toFetch); err != nil {
			logf("debian: %v", err)
		}
	}
	for _, d := range debPeers {
		if !need[d.name] {
			continue
		}
		exe := filepath.Join(p.root, d.path)
		if _, err := os.Stat(exe); err != nil {
			p.missing[d.name] = fmt.Sprintf("Debian package %s could not be installed (see the log above)", d.pkg)
			continue
		}
		p.path[d.name] = exe
	}

	bin := filepath.Join(cache, "bin")
	for _, g := range goPeers {
		if !need[g.name] {
			continue
		}
		exe := filepath.Join(bin, g.name)
		if _, err := os.Stat(exe); err != nil {
			logf("installing %s with go install (a few minutes the first time)", g.module)
			cmd := "GOBIN=" + bin + " go install " + g.module
			p.commands = append(p.commands, cmd)
			c := exec.CommandContext(ctx, "go", "install", g.module)
			c.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod")
			if out, err := c.CombinedOutput(); err != nil {
				p.missing[g.name] = fmt.Sprintf("go install %s failed: %s", g.module, lastLines(string(out), 2))
				logf("%s", p.missing[g.name])
				continue
			}
		}
		p.path[g.name] = exe
	}
	p.readVersions(ctx)
	return p
}

func pkgNames(ds []debPeer) []string {
	var s []string
	for _, d := range ds {
		s = append(s, d.pkg)
	}
	return s
}

// fetchDebs downloads the packages and the libraries they depend on that
// are not installed on the machine, and unpacks them into p.root.
func (p *peers) fetchDebs(ctx context.Context, ds []debPeer) error {
	debs := filepath.Join(p.cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	pkgs := pkgNames(ds)
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
		"--no-breaks", "--no-replaces", "--no-enhances"}, pkgs...)
	out, err := exec.CommandContext(ctx, "apt-cache", args...).Output()
	if err != nil {
		return fmt.Errorf("apt-cache depends: %w (run apt-get update?)", err)
	}
	want := append([]string(nil), pkgs...)
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '<' || seen[line] {
			continue
		}
		seen[line] = true
		// Only shared libraries: the packages' own scripts never run.
		if !strings.HasPrefix(line, "lib") || strings.HasSuffix(line, "-perl") || installed(ctx, line) {
			continue
		}
		want = append(want, line)
	}
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download"}, want...)...)
	cmd.Dir = debs
	p.commands = append(p.commands, "(cd "+debs+" && apt-get download "+strings.Join(want, " ")+")")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download: %w: %s", err, lastLines(string(b), 3))
	}
	files, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	p.commands = append(p.commands, "for f in "+debs+"/*.deb; do dpkg -x $f "+p.root+"; done")
	for _, f := range files {
		if b, err := exec.CommandContext(ctx, "dpkg", "-x", f, p.root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg -x %s: %w: %s", f, err, b)
		}
	}
	return nil
}

func installed(ctx context.Context, pkg string) bool {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Status}", pkg).Output()
	return err == nil && strings.Contains(string(out), "ok installed")
}

// readVersions asks every peer for its version.
func (p *peers) readVersions(ctx context.Context) {
	ask := map[string][]string{
		"nginx":   {"-v"},
		"haproxy": {"-v"},
		"wrk":     {"-v"},
		"h2load":  {"--version"},
		"fortio":  {"version"},
		"opa":     {"version"},
		"caddy":   {"version"},
	}
	for name, args := range ask {
		exe, ok := p.path[name]
		if !ok {
			continue
		}
		c := exec.CommandContext(ctx, exe, args...)
		c.Env = append(os.Environ(), p.env...)
		out, _ := c.CombinedOutput()
		v := strings.TrimSpace(string(out))
		if i := strings.IndexByte(v, '\n'); i >= 0 {
			v = v[:i]
		}
		if v == "" || v == "unknown" {
			v = "unknown"
			// `caddy version` says "unknown" when built by go install; the
			// module version is in its build information.
			if b, err := exec.CommandContext(ctx, "go", "version", "-m", exe).Output(); err == nil {
				for _, l := range strings.Split(string(b), "\n") {
					if f := strings.Fields(l); len(f) >= 3 && f[0] == "mod" {
						v = f[1] + " " + f[2]
					}
				}
			}
		}
		p.version[name] = v
	}
}
