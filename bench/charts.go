package main

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// palette for grouped bars.
var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
}

// charts draws the PNG charts the Markdown links to.
func (e *env) charts() error {
	res := e.res
	if len(res.http) > 0 {
		var names []string
		var rps plotter.Values
		for _, pd := range proxies {
			if runs, ok := res.http[pd.name]; ok {
				names = append(names, pd.name)
				rps = append(rps, max(0, median(runs, func(r httpRun) float64 { return r.rps })))
			}
		}
		if err := barChart(filepath.Join(e.o.img, "throughput.png"),
			fmt.Sprintf("HTTP/1.1 keep-alive, 1 KiB, wrk -t%d -c%d (median of %d)", e.o.threads, e.o.conns, e.o.runs),
			"requests/s", names, []string{""}, []plotter.Values{rps}); err != nil {
			return err
		}
		// Absolute percentiles, direct included: differences of noisy tails
		// can be negative and hide the picture; the table has them.
		shown := percentiles[:3]
		var lnames []string
		groups := make([]plotter.Values, len(shown))
		legend := make([]string, len(shown))
		for i, q := range shown {
			legend[i] = fmt.Sprintf("p%g", q)
		}
		for _, pd := range proxies {
			runs, ok := res.http[pd.name]
			if !ok {
				continue
			}
			lnames = append(lnames, pd.name)
			for i, q := range shown {
				groups[i] = append(groups[i], max(0, median(runs, func(r httpRun) float64 { return r.lat[q] }))*1000)
			}
		}
		if len(lnames) > 0 {
			if err := barChart(filepath.Join(e.o.img, "latency.png"),
				fmt.Sprintf("latency at %d qps, %d connections (fortio, median of %d runs)", e.o.latQPS, e.o.latConns, e.o.runs),
				"latency (ms)", lnames, legend, groups); err != nil {
				return err
			}
		}
	}
	if len(res.server) > 0 {
		var names []string
		var v plotter.Values
		for _, k := range e.serverOrder(res.server) {
			name, ok := shortServerName[k]
			if !ok { // the report row and the fixed-rate rows
				continue
			}
			names = append(names, name)
			v = append(v, max(0, median(res.server[k], perCPU)))
		}
		if len(names) > 0 {
			if err := barChart(filepath.Join(e.o.img, "server.png"),
				fmt.Sprintf("RBAC policy decisions per CPU-second of the server, %d callers", e.o.srvConns),
				"decisions per CPU-second", names, []string{""}, []plotter.Values{v}); err != nil {
				return err
			}
		}
	}
	return nil
}

// shortServerName labels the server chart's bars.
var shortServerName = map[string]string{
	"remora mixer: Mixer Check":                        "remora Mixer Check",
	"remora mixer: ext_authz Check":                    "remora ext_authz",
	"remora mixer, no decision cache: Mixer Check":     "remora Mixer Check, no cache",
	"remora mixer, no decision cache: ext_authz Check": "remora ext_authz, no cache",
	"opa-envoy-plugin: ext_authz Check":                "opa-envoy-plugin",
	"opa run --server: REST":                           "opa REST",
}

// barChart draws one bar group per legend entry over the names.
func barChart(path, title, ylabel string, names, legend []string, groups []plotter.Values) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	n := float64(len(groups))
	// About 480 points of the 8-inch plot are data area; each name gets its
	// bars and a gap of one bar, or a bar's worth more for a single group.
	gap := 1.0
	if n == 1 {
		gap = 0.8
	}
	w := vg.Points(min(60, 480/float64(max(1, len(names)))/(n+gap)))
	top, bottom := 0.0, 0.0
	for _, g := range groups {
		for _, v := range g {
			top, bottom = max(top, v), min(bottom, v)
		}
	}
	p.Y.Min = bottom * 1.1 // an added latency below the direct one is noise, shown as it is
	for i, g := range groups {
		bars, err := plotter.NewBarChart(g, w)
		if err != nil {
			return fmt.Errorf("chart %s: %w", path, err)
		}
		bars.LineStyle.Width = 0
		bars.Color = palette[i%len(palette)]
		bars.Offset = vg.Length(float64(i)-(n-1)/2) * w
		p.Add(bars)
		if legend[i] != "" {
			p.Legend.Add(legend[i], bars)
		}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	if top > 0 {
		p.Y.Max = top * 1.2 // room for the legend
	}
	p.NominalX(names...)
	if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("chart %s: %w", path, err)
	}
	return nil
}
