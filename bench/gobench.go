package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// goBench is an in-process Go benchmark whose target is a cost per
// operation.
type goBench struct {
	pkg, name     string
	targetNs      float64 // at most, per operation
	targetAllocs  float64
	targetCaption string
}

// goBenchResult is the median of several runs of a goBench.
type goBenchResult struct {
	nsPerOp, allocsPerOp float64
	runs                 int
	command              string
}

// goBenches are the hot paths whose targets are per-operation costs.
var goBenches = []goBench{
	{pkg: "./mixer/client", name: "BenchmarkCheckCacheHit", targetNs: 1000, targetAllocs: 0,
		targetCaption: "check-cache hit ≤ 1 µs, 0 allocs"},
}

// measureGoBenches runs each of goBenches -count times in the repository.
func (e *env) measureGoBenches(ctx context.Context) error {
	count := max(e.o.runs, 5)
	for _, gb := range goBenches {
		argv := []string{"go", "test", "-run", "^$", "-bench", "^" + gb.name + "$", "-benchmem", "-count", strconv.Itoa(count), gb.pkg}
		c := exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Dir = e.o.repo
		out, err := c.CombinedOutput()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.unavailable("go "+gb.name, fmt.Sprintf("%v: %s", err, lastLines(string(out), 3)))
			continue
		}
		ns, allocs, err := parseGoBench(string(out), gb.name)
		if err != nil {
			e.unavailable("go "+gb.name, err.Error())
			continue
		}
		r := goBenchResult{nsPerOp: median(ns, func(v float64) float64 { return v }),
			allocsPerOp: median(allocs, func(v float64) float64 { return v }), runs: len(ns), command: shellJoin(argv)}
		e.res.goBench[gb.name] = r
		e.commands["go bench "+gb.name] = r.command
		logf("%s: %.0f ns/op, %.0f allocs/op (median of %d)", gb.name, r.nsPerOp, r.allocsPerOp, r.runs)
	}
	return nil
}

// parseGoBench reads ns/op and allocs/op of every result line of name in
// `go test -bench -benchmem` output.
func parseGoBench(out, name string) (ns, allocs []float64, err error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		var n, a float64 = -1, -1
		for i := 2; i+1 < len(f); i++ {
			v, perr := strconv.ParseFloat(f[i], 64)
			if perr != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				n = v
			case "allocs/op":
				a = v
			}
		}
		if n < 0 || a < 0 {
			return nil, nil, fmt.Errorf("%s: no ns/op and allocs/op in %q (run with -benchmem)", name, line)
		}
		ns, allocs = append(ns, n), append(allocs, a)
	}
	if len(ns) == 0 {
		return nil, nil, fmt.Errorf("%s: no result lines in the output", name)
	}
	return ns, allocs, nil
}

// goBenchTargets writes the rows of the targets table the Go benchmarks
// measure.
func (e *env) goBenchTargets(row func(target, measured, verdict string)) {
	for _, gb := range goBenches {
		r, ok := e.res.goBench[gb.name]
		if !ok {
			row(gb.targetCaption, "not measured", "not measured")
			continue
		}
		v := "**not met**"
		if r.nsPerOp <= gb.targetNs && r.allocsPerOp <= gb.targetAllocs {
			v = "met"
		}
		row(gb.targetCaption, fmt.Sprintf("%.0f ns/op, %.0f allocs/op (in-process `%s`, median of %d, on the same machine)",
			r.nsPerOp, r.allocsPerOp, r.command, r.runs), v)
	}
}
