//go:build unix

package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// writeChart draws the latency of the fast requests (GET /pid and the
// unary RPC) over time, in 100 ms bins (median and maximum, on a log
// scale), with each upgrade marked where it was signalled: green when it
// committed, red when it was rolled back; failed requests would be red
// crosses along the top. It writes an SVG to path.
func writeChart(path string, res *upgradertest.Result, done []upgradeResult) error {
	if len(res.Samples) == 0 {
		return fmt.Errorf("no request to draw")
	}
	const (
		width, height            = 1000.0, 360.0
		left, right, top, bottom = 64.0, 16.0, 36.0, 44.0
		bin                      = 100 * time.Millisecond
		minMS                    = 0.05
	)
	start := res.Samples[0].Start
	end := start
	for _, s := range res.Samples {
		start = minTime(start, s.Start)
		end = maxTime(end, s.Start.Add(s.Latency))
	}
	span := end.Sub(start)
	type stat struct{ med, max float64 }
	bins := make([][]float64, int(span/bin)+1)
	var failed []time.Time
	for _, s := range res.Samples {
		if s.Class.Failed() {
			failed = append(failed, s.Start)
			continue
		}
		if s.Op != upgradertest.OpPID || s.Class != upgradertest.OK {
			continue
		}
		i := int(s.Start.Sub(start) / bin)
		bins[i] = append(bins[i], float64(s.Latency)/float64(time.Millisecond))
	}
	stats := make([]*stat, len(bins))
	maxMS := 1.0
	for i, b := range bins {
		if len(b) == 0 {
			continue
		}
		slices.Sort(b)
		stats[i] = &stat{med: b[len(b)/2], max: b[len(b)-1]}
		maxMS = math.Max(maxMS, stats[i].max)
	}
	top10 := math.Pow(10, math.Ceil(math.Log10(maxMS)))
	x := func(t time.Time) float64 {
		return left + (width-left-right)*float64(t.Sub(start))/float64(max(span, time.Millisecond))
	}
	y := func(ms float64) float64 {
		ms = math.Max(ms, minMS)
		f := (math.Log10(ms) - math.Log10(minMS)) / (math.Log10(top10) - math.Log10(minMS))
		return height - bottom - (height-top-bottom)*f
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="system-ui, sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#fff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="20" font-size="14" font-weight="600">Latency of fast requests while the server is upgraded (100 ms bins, log scale)</text>`+"\n", left)
	// Grid: powers of ten.
	for ms := minMS * 2; ms <= top10*1.001; ms *= 10 {
		v := math.Pow(10, math.Round(math.Log10(ms)))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e5e7eb"/>`, left, width-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#667085">%s</text>`+"\n", left-6, y(v)+4, msLabel(v))
	}
	for s := time.Duration(0); s <= span; s += time.Second {
		xs := x(start.Add(s))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#667085">%ds</text>`, xs, height-bottom+16, int(s.Seconds()))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#667085">time since the load started</text>`+"\n", (left+width-right)/2, height-8)
	// Upgrades.
	for i, u := range done {
		color, what := "#13795b", fmt.Sprintf("upgrade %d", i+1)
		if u.rolledBack {
			color, what = "#b42318", fmt.Sprintf("upgrade %d rolled back", i+1)
		}
		xs := x(u.at)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-dasharray="4 3"/>`, xs, xs, top, height-bottom, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="11" transform="rotate(-90 %.1f %.1f)" text-anchor="end">%s</text>`+"\n",
			xs+4, top+4, color, xs+4, top+4, html.EscapeString(what))
	}
	// Median and maximum per bin.
	line := func(pick func(*stat) float64, color string, w float64) {
		var pts []string
		for i, s := range stats {
			if s == nil {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(start.Add(time.Duration(i)*bin+bin/2)), y(pick(s))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%.1f" points="%s"/>`+"\n", color, w, strings.Join(pts, " "))
	}
	line(func(s *stat) float64 { return s.max }, "#9aa3b2", 1)
	line(func(s *stat) float64 { return s.med }, "#2f5bd3", 2)
	for _, f := range failed {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#b42318" text-anchor="middle">×</text>`, x(f), top+10)
	}
	fmt.Fprintf(&b, `<g transform="translate(%.0f,%.0f)"><line x1="0" x2="18" y1="0" y2="0" stroke="#2f5bd3" stroke-width="2"/><text x="22" y="4">median</text>`+
		`<line x1="80" x2="98" y1="0" y2="0" stroke="#9aa3b2"/><text x="102" y="4">max</text>`+
		`<text x="150" y="4" fill="#b42318">failed requests: %d</text></g>`+"\n", width-right-330, top-8, len(failed))
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func msLabel(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%gs", ms/1000)
	case ms >= 1:
		return fmt.Sprintf("%gms", ms)
	}
	return fmt.Sprintf("%gµs", ms*1000)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
