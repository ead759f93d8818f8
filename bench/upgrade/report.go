//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// dist is a distribution of durations, in milliseconds.
type dist struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

func distOf(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	at := func(p float64) float64 {
		return ms(ds[int(float64(len(ds)-1)*p/100)])
	}
	return dist{N: len(ds), P50: at(50), P99: at(99), P999: at(99.9), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// TargetResult is what the benchmark reports for one target.
type TargetResult struct {
	Target   string  `json:"target"`
	Restart  string  `json:"restart"`
	Error    string  `json:"error,omitempty"`
	Upgrades int     `json:"upgrades"`
	LoadS    float64 `json:"load_s"`

	Requests          int            `json:"requests"`
	RequestsPerSec    float64        `json:"requests_per_s"`
	Failed            int            `json:"failed"`
	FailedPerUpgrade  float64        `json:"failed_per_upgrade"`
	FailedNearUpgrade int            `json:"failed_near_upgrade"`
	FailuresByClass   map[string]int `json:"failures_by_class"`
	FailuresByKind    map[string]int `json:"failures_by_kind"`
	FirstFailures     string         `json:"first_failures,omitempty"`

	// Reconnects: requests for which a keep-alive client (checked, blind,
	// slow) had to dial again, its connection having been closed.
	Reconnects           int     `json:"keepalive_reconnects"`
	ReconnectsPerUpgrade float64 `json:"keepalive_reconnects_per_upgrade"`

	// Latency of the successful fast requests (keep-alive and new-connection
	// GETs of /pid): overall, started within 1 s after an upgrade's signal
	// ("near"), and the rest ("steady").
	Latency           dist    `json:"latency"`
	LatencySteady     dist    `json:"latency_steady"`
	LatencyNear       dist    `json:"latency_near"`
	NearOverSteadyP99 float64 `json:"near_over_steady_p99"`
	// Latency of the successful 200 ms requests.
	LatencySlow dist `json:"latency_slow"`

	SignalToServing dist `json:"signal_to_serving"`
	SignalToExited  dist `json:"signal_to_old_exited"`
	// From the end of the last response the old pid gave (to the load or
	// the driver's probe) to the moment the old pid exited.
	LastResponseToExit dist `json:"last_response_to_exit"`
	// handoff only: its own signal→accepting, from its log.
	SelfReportedServing *dist `json:"self_reported_serving,omitempty"`

	Before   procStat `json:"proc_before"`
	WarmedUp procStat `json:"proc_warmed_up"`
	End      procStat `json:"proc_end"`
	MaxAfter procStat `json:"proc_max_after_warm_up"`
	Stopped  bool     `json:"stopped_on_sigterm"`
	Leftover []int    `json:"leftover_processes"`

	DriverCPUS       float64 `json:"driver_cpu_s"`
	DriverCPUPercent float64 `json:"driver_cpu_percent_of_one_core"`

	PerUpgrade []upgradeRec `json:"per_upgrade"`
}

// analyze turns what measure saw of target t into its TargetResult.
func analyze(cfg config, t target, raw *rawRun) TargetResult {
	r := TargetResult{
		Target:          t.name,
		Restart:         "SIGHUP: in-place upgrade (socket hand-over)",
		Upgrades:        len(raw.upgrades),
		FailuresByClass: map[string]int{},
		FailuresByKind:  map[string]int{},
		Before:          raw.before,
		End:             raw.end,
		Stopped:         raw.stopped,
		Leftover:        raw.leftover,
		DriverCPUS:      raw.cpu.Seconds(),
	}
	if r.Leftover == nil {
		r.Leftover = []int{}
	}
	if t.naive {
		r.Restart = "SIGTERM, wait for exit (Shutdown), start a new process"
	}
	r.addProcStats(raw)
	if raw == nil || raw.res == nil {
		return r
	}
	loadTime := raw.loadTime
	r.LoadS = loadTime.Seconds()
	if loadTime > 0 {
		r.DriverCPUPercent = 100 * raw.cpu.Seconds() / loadTime.Seconds()
	}
	ends := r.addSamples(raw, loadTime, nearUpgrade(raw.upgrades, cfg.Near))
	r.addUpgrades(raw, ends)
	if len(raw.selfServed) > 0 {
		d := distOf(raw.selfServed)
		r.SelfReportedServing = &d
	}
	r.PerUpgrade = raw.upgrades
	return r
}

// addProcStats fills in the serving process once warmed up (after up to 10
// upgrades) and its maximum from then on.
func (r *TargetResult) addProcStats(raw *rawRun) {
	if len(raw.stats) == 0 {
		return
	}
	w := min(10, len(raw.stats)/2)
	r.WarmedUp = raw.stats[w]
	for _, s := range append(raw.stats[w:], raw.end) {
		r.MaxAfter.FDs = max(r.MaxAfter.FDs, s.FDs)
		r.MaxAfter.SocketFDs = max(r.MaxAfter.SocketFDs, s.SocketFDs)
		r.MaxAfter.OtherFDs = max(r.MaxAfter.OtherFDs, s.OtherFDs)
		r.MaxAfter.RSSKB = max(r.MaxAfter.RSSKB, s.RSSKB)
		r.MaxAfter.Threads = max(r.MaxAfter.Threads, s.Threads)
	}
}

// nearUpgrade reports whether a time is within near after the signal of one
// of the upgrades (which are in the order of their start).
func nearUpgrade(upgrades []upgradeRec, near time.Duration) func(time.Time) bool {
	starts := make([]time.Time, len(upgrades))
	for i, u := range upgrades {
		starts[i] = u.start
	}
	return func(at time.Time) bool {
		i := sort.Search(len(starts), func(i int) bool { return starts[i].After(at) }) - 1
		return i >= 0 && at.Sub(starts[i]) < near
	}
}

// responseEnds are the ends of the first and of the last response of each
// pid, to the load or to the driver's probe.
type responseEnds struct {
	first, last map[int]time.Time
}

func (e responseEnds) note(pid int, end time.Time) {
	if end.After(e.last[pid]) {
		e.last[pid] = end
	}
	if f, ok := e.first[pid]; !ok || end.Before(f) {
		e.first[pid] = end
	}
}

// addSamples fills in the requests, the failures and the latencies of the
// load that ran for loadTime, and returns when each pid answered.
func (r *TargetResult) addSamples(raw *rawRun, loadTime time.Duration, near func(time.Time) bool) responseEnds {
	samples := raw.res.Samples
	r.Requests = len(samples)
	if loadTime > 0 {
		r.RequestsPerSec = float64(len(samples)) / loadTime.Seconds()
	}
	var all, steady, nearL, slow []time.Duration
	ends := responseEnds{first: map[int]time.Time{}, last: map[int]time.Time{}}
	for _, s := range samples {
		if s.Class != upgradertest.OK {
			r.Failed++
			r.FailuresByClass[s.Class.String()]++
			r.FailuresByKind[s.Kind.String()]++
			if near(s.Start) {
				r.FailedNearUpgrade++
			}
			continue
		}
		if s.Reconnect {
			r.Reconnects++
		}
		if pid, err := strconv.Atoi(s.PID); err == nil {
			ends.note(pid, s.Start.Add(s.Latency))
		}
		switch s.Kind {
		case upgradertest.Slow:
			slow = append(slow, s.Latency)
		case upgradertest.Stream:
		default:
			all = append(all, s.Latency)
			if near(s.Start) {
				nearL = append(nearL, s.Latency)
			} else {
				steady = append(steady, s.Latency)
			}
		}
	}
	for _, p := range raw.probes {
		ends.note(p.pid, p.end)
	}
	if r.Failed > 0 {
		r.FirstFailures = raw.res.FirstFailures(20)
	}
	if r.Upgrades > 0 {
		r.FailedPerUpgrade = float64(r.Failed) / float64(r.Upgrades)
		r.ReconnectsPerUpgrade = float64(r.Reconnects) / float64(r.Upgrades)
	}
	r.Latency, r.LatencySteady, r.LatencyNear, r.LatencySlow = distOf(all), distOf(steady), distOf(nearL), distOf(slow)
	if r.LatencySteady.P99 > 0 {
		r.NearOverSteadyP99 = r.LatencyNear.P99 / r.LatencySteady.P99
	}
	return ends
}

// addUpgrades fills in the timings of each upgrade, in raw.upgrades and in
// their distributions: from the signal to the first answer of the new pid
// and to the exit of the old one, and from the last answer of the old pid
// to its exit.
func (r *TargetResult) addUpgrades(raw *rawRun, ends responseEnds) {
	var serving, exited, lastToExit []time.Duration
	for i := range raw.upgrades {
		u := &raw.upgrades[i]
		u.AtS = u.start.Sub(raw.loadStart).Seconds()
		first := u.probeNewAt
		if f, ok := ends.first[u.New]; ok && f.Before(first) {
			first = f
		}
		serving = append(serving, first.Sub(u.start))
		exited = append(exited, u.exitAt.Sub(u.start))
		u.ServingMS, u.ExitedMS = ms(first.Sub(u.start)), ms(u.exitAt.Sub(u.start))
		// The last response of the old pid; at least the signal, since
		// the old pid answered before it.
		last := ends.last[u.Old]
		u.SignalAt, u.OldExitedAt, u.LastOldEndAt = u.start, u.exitAt, last
		if last.Before(u.start) {
			last = u.start
		}
		gap := max(u.exitAt.Sub(last), 0)
		lastToExit = append(lastToExit, gap)
		u.LastToExit = ms(gap)
		if ends.last[u.Old].After(u.start) {
			u.OldAnswered = 1
		}
	}
	r.SignalToServing, r.SignalToExited, r.LastResponseToExit = distOf(serving), distOf(exited), distOf(lastToExit)
}

// report is the whole benchmark's output.
type report struct {
	Command   string             `json:"command"`
	Started   string             `json:"started"`
	GoVersion string             `json:"go_version"`
	CPUs      int                `json:"cpus"`
	LoadStart string             `json:"loadavg_start"`
	LoadEnd   string             `json:"loadavg_end"`
	Config    config             `json:"config"`
	Targets   []TargetResult     `json:"targets"`
	Ratios    map[string]float64 `json:"ratios_handoff_over_tableflip,omitempty"`

	rows []row
}

// row is one line of the table: a label and a number per target.
type row struct {
	label string
	val   func(*TargetResult) float64
	unit  string // "", "ms", "%", "MiB", "x", or "int"
	ratio bool   // show handoff/tableflip
}

func rows() []row {
	dr := func(label string, d func(*TargetResult) *dist, p func(*dist) float64) row {
		return row{label, func(r *TargetResult) float64 { return p(d(r)) }, "ms", true}
	}
	p50 := func(d *dist) float64 { return d.P50 }
	p99 := func(d *dist) float64 { return d.P99 }
	p999 := func(d *dist) float64 { return d.P999 }
	mx := func(d *dist) float64 { return d.Max }
	lat := func(r *TargetResult) *dist { return &r.Latency }
	st := func(r *TargetResult) *dist { return &r.LatencySteady }
	nr := func(r *TargetResult) *dist { return &r.LatencyNear }
	sl := func(r *TargetResult) *dist { return &r.LatencySlow }
	sv := func(r *TargetResult) *dist { return &r.SignalToServing }
	ex := func(r *TargetResult) *dist { return &r.SignalToExited }
	le := func(r *TargetResult) *dist { return &r.LastResponseToExit }
	rs := []row{
		{"upgrades (restarts) done", func(r *TargetResult) float64 { return float64(r.Upgrades) }, "int", false},
		{"requests", func(r *TargetResult) float64 { return float64(r.Requests) }, "int", true},
		{"requests/s", func(r *TargetResult) float64 { return r.RequestsPerSec }, "", true},
		{"failed requests", func(r *TargetResult) float64 { return float64(r.Failed) }, "int", true},
		{"  per upgrade", func(r *TargetResult) float64 { return r.FailedPerUpgrade }, "", true},
		{"  started within 1 s of an upgrade", func(r *TargetResult) float64 { return float64(r.FailedNearUpgrade) }, "int", true},
	}
	for _, c := range []string{"refused", "reset", "eof-reused", "eof", "timeout", "non-2xx", "truncated", "other"} {
		rs = append(rs, row{"  class " + c, func(r *TargetResult) float64 { return float64(r.FailuresByClass[c]) }, "int", true})
	}
	for _, k := range []string{"keepalive-checked", "keepalive-blind", "new-conn", "slow", "stream"} {
		rs = append(rs, row{"  client " + k, func(r *TargetResult) float64 { return float64(r.FailuresByKind[k]) }, "int", true})
	}
	rs = append(rs,
		row{"keep-alive reconnects", func(r *TargetResult) float64 { return float64(r.Reconnects) }, "int", true},
		row{"  per upgrade", func(r *TargetResult) float64 { return r.ReconnectsPerUpgrade }, "", true},
	)
	rs = append(rs,
		dr("latency all p50", lat, p50), dr("latency all p99", lat, p99), dr("latency all p99.9", lat, p999), dr("latency all max", lat, mx),
		dr("latency steady p99", st, p99),
		dr("latency near upgrade p50", nr, p50), dr("latency near upgrade p99", nr, p99), dr("latency near upgrade p99.9", nr, p999), dr("latency near upgrade max", nr, mx),
		row{"near p99 / steady p99", func(r *TargetResult) float64 { return r.NearOverSteadyP99 }, "x", true},
		dr("slow (200 ms) p99", sl, p99), dr("slow (200 ms) max", sl, mx),
		dr("signal→new serving p50", sv, p50), dr("signal→new serving p99", sv, p99), dr("signal→new serving max", sv, mx),
		dr("signal→old exited p50", ex, p50), dr("signal→old exited max", ex, mx),
		dr("last response→old exit p50", le, p50), dr("last response→old exit p99", le, p99), dr("last response→old exit max", le, mx),
		row{"fds before (1 s in)", func(r *TargetResult) float64 { return float64(r.Before.FDs) }, "int", true},
		row{"fds warmed up", func(r *TargetResult) float64 { return float64(r.WarmedUp.FDs) }, "int", true},
		row{"fds end", func(r *TargetResult) float64 { return float64(r.End.FDs) }, "int", true},
		row{"non-socket fds warmed up", func(r *TargetResult) float64 { return float64(r.WarmedUp.OtherFDs) }, "int", true},
		row{"non-socket fds end", func(r *TargetResult) float64 { return float64(r.End.OtherFDs) }, "int", true},
		row{"non-socket fds max after warm-up", func(r *TargetResult) float64 { return float64(r.MaxAfter.OtherFDs) }, "int", true},
		row{"RSS before (1 s in)", func(r *TargetResult) float64 { return float64(r.Before.RSSKB) / 1024 }, "MiB", true},
		row{"RSS warmed up", func(r *TargetResult) float64 { return float64(r.WarmedUp.RSSKB) / 1024 }, "MiB", true},
		row{"RSS end", func(r *TargetResult) float64 { return float64(r.End.RSSKB) / 1024 }, "MiB", true},
		row{"RSS max after warm-up", func(r *TargetResult) float64 { return float64(r.MaxAfter.RSSKB) / 1024 }, "MiB", true},
		row{"threads end", func(r *TargetResult) float64 { return float64(r.End.Threads) }, "int", true},
		row{"leftover processes", func(r *TargetResult) float64 { return float64(len(r.Leftover)) }, "int", false},
		row{"load generator CPU (% of a core)", func(r *TargetResult) float64 { return r.DriverCPUPercent }, "%", false},
	)
	return rs
}

// finish computes the ratios handoff/tableflip.
func (rep *report) finish() {
	rep.rows = rows()
	h, tf := rep.find("handoff"), rep.find("tableflip")
	if h == nil || tf == nil {
		return
	}
	rep.Ratios = map[string]float64{}
	for _, rw := range rep.rows {
		if !rw.ratio {
			continue
		}
		if a, b := rw.val(h), rw.val(tf); b != 0 {
			rep.Ratios[strings.TrimSpace(rw.label)] = round3(a / b)
		}
	}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func (rep *report) find(name string) *TargetResult {
	for i := range rep.Targets {
		if rep.Targets[i].Target == name {
			return &rep.Targets[i]
		}
	}
	return nil
}

func format(v float64, unit string) string {
	switch unit {
	case "int":
		return strconv.FormatFloat(v, 'f', 0, 64)
	case "ms":
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	case "%":
		return strconv.FormatFloat(v, 'f', 1, 64) + "%"
	case "MiB":
		return strconv.FormatFloat(v, 'f', 1, 64) + "MiB"
	case "x":
		return strconv.FormatFloat(v, 'f', 2, 64) + "x"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// print writes the table.
func (rep *report) print(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "%d upgrades per target, targets in turn (one upgrade each per round), each turn %v of load, the upgrade, %v more; %d clients + %d streams (pause %v), %d CPUs, load average %s → %s\n",
		c.Upgrades, c.WarmUp, c.Interval, c.Clients, c.Streams, c.Pause, rep.CPUs, rep.LoadStart, rep.LoadEnd)
	fmt.Fprintf(w, "latency rows: successful keep-alive and new-connection GETs; \"near upgrade\" = started within %v after a signal\n\n", c.Near)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	h, tf := rep.find("handoff"), rep.find("tableflip")
	fmt.Fprint(tw, "metric\t")
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "%s\t", t.Target)
	}
	if h != nil && tf != nil {
		fmt.Fprint(tw, "handoff/tableflip\t")
	}
	fmt.Fprintln(tw)
	for _, rw := range rep.rows {
		fmt.Fprintf(tw, "%s\t", rw.label)
		for i := range rep.Targets {
			fmt.Fprintf(tw, "%s\t", format(rw.val(&rep.Targets[i]), rw.unit))
		}
		if h != nil && tf != nil {
			ratio := "-"
			if rw.ratio {
				a, b := rw.val(h), rw.val(tf)
				switch {
				case b != 0:
					ratio = strconv.FormatFloat(a/b, 'f', 2, 64)
				case a == 0:
					ratio = "(0/0)"
				default:
					ratio = "(x/0)"
				}
			}
			fmt.Fprintf(tw, "%s\t", ratio)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, t := range rep.Targets {
		if t.SelfReportedServing != nil {
			fmt.Fprintf(w, "\n%s's own log, signal→accepting: p50 %.2fms, max %.2fms (n=%d)\n", t.Target, t.SelfReportedServing.P50, t.SelfReportedServing.Max, t.SelfReportedServing.N)
		}
	}
	for _, t := range rep.Targets {
		if strings.HasPrefix(t.Target, "handoff") && t.FirstFailures != "" {
			fmt.Fprintf(w, "\n%s's first failures:\n%s", t.Target, t.FirstFailures)
		}
	}
}

func (rep *report) write(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
