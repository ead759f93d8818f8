//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// reportVersion is the version of the JSON report's shape: it changes when
// a field is renamed or removed, not when one is added.
const reportVersion = 1

// Report is the outcome of a check, written as JSON with -json. Every
// field is documented in the package doc; TestReportDocumented holds the
// two together.
type Report struct {
	Version       int         `json:"version"`
	Passed        bool        `json:"passed"`
	Verdict       string      `json:"verdict"`
	Reasons       []string    `json:"reasons"`
	Started       time.Time   `json:"started"`
	DurationS     float64     `json:"duration_s"`
	ServerCommand []string    `json:"server_command"`
	Config        ConfigRep   `json:"config"`
	Requests      RequestsRep `json:"requests"`
	Clients       []ClientRep `json:"clients"`
	Latency       LatencyRep  `json:"latency_ms"`
	Upgrades      UpgradesRep `json:"upgrades"`
	Processes     ProcsRep    `json:"processes"`
	FirstFailures []Failure   `json:"first_failures"`
}

// ConfigRep is the configuration of the check.
type ConfigRep struct {
	Addr             string         `json:"addr"`
	PIDFile          string         `json:"pidfile"`
	Upgrades         int            `json:"upgrades"`
	IntervalMS       float64        `json:"interval_ms"`
	Trigger          string         `json:"trigger"`
	Stop             string         `json:"stop"`
	UpgradeTimeoutMS float64        `json:"upgrade_timeout_ms"`
	Budget           int            `json:"budget"`
	Requests         []string       `json:"requests"`
	Probe            string         `json:"probe"`
	Slow             string         `json:"slow"`
	Stream           string         `json:"stream"`
	Workers          map[string]int `json:"workers"`
	PauseMS          float64        `json:"pause_ms"`
	TimeoutMS        float64        `json:"timeout_ms"`
	NearMS           float64        `json:"near_ms"`
}

// RequestsRep counts the requests of the load.
type RequestsRep struct {
	Total         int            `json:"total"`
	OK            int            `json:"ok"`
	Failed        int            `json:"failed"`
	FailedNear    int            `json:"failed_near_upgrades"`
	Unprocessed   int            `json:"unprocessed"`
	PerS          float64        `json:"per_s"`
	FailedByClass map[string]int `json:"failed_by_class"`
}

// ClientRep counts the requests of one kind of client.
type ClientRep struct {
	Kind          string         `json:"kind"`
	Workers       int            `json:"workers"`
	Requests      int            `json:"requests"`
	Failed        int            `json:"failed"`
	FailedByClass map[string]int `json:"failed_by_class"`
}

// Dist is a distribution of durations, in milliseconds.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// LatencyRep is the latency of successful requests.
type LatencyRep struct {
	Steady Dist `json:"steady"`
	Near   Dist `json:"near_upgrades"`
	Slow   Dist `json:"slow"`
}

// UpgradesRep sums up the upgrades.
type UpgradesRep struct {
	Requested          int          `json:"requested"`
	Completed          int          `json:"completed"`
	TriggerToServing   Dist         `json:"trigger_to_serving_ms"`
	TriggerToOldExit   Dist         `json:"trigger_to_old_exit_ms"`
	LastResponseToExit Dist         `json:"old_last_response_to_exit_ms"`
	List               []UpgradeRep `json:"list"`
}

// UpgradeRep is one upgrade.
type UpgradeRep struct {
	N                    int      `json:"n"`
	AtS                  float64  `json:"at_s"`
	OldPID               int      `json:"old_pid"`
	NewPID               int      `json:"new_pid"`
	Completed            bool     `json:"completed"`
	Error                string   `json:"error"`
	ServingMS            *float64 `json:"trigger_to_serving_ms"`
	OldExitMS            *float64 `json:"trigger_to_old_exit_ms"`
	LastResponseToExitMS *float64 `json:"old_last_response_to_exit_ms"`
	CommandMS            *float64 `json:"command_ms"`
	CommandStatus        *int     `json:"command_status"`
	ProbeErrors          int      `json:"probe_errors"`
	Failed               int      `json:"failed"`
	OldFDs               int      `json:"old_fds"`
	OldOtherFDs          int      `json:"old_non_socket_fds"`
}

// ProcsRep is what the checker saw of the server's processes.
type ProcsRep struct {
	FDs         Span       `json:"fds"`
	OtherFDs    Span       `json:"non_socket_fds"`
	RSSKiB      Span       `json:"rss_kib"`
	Threads     Span       `json:"threads"`
	Stop        StopRep    `json:"stop"`
	LeftBehind  []leftover `json:"left_behind"`
	ServingPIDs []int      `json:"serving_pids"`
}

// Span is a figure of the serving process: after the warm-up, at the
// end, and the most over every sample.
type Span struct {
	Start int `json:"start"`
	End   int `json:"end"`
	Max   int `json:"max"`
}

// StopRep is the final stop.
type StopRep struct {
	How        string   `json:"how"`
	PID        int      `json:"pid"`
	ExitMS     *float64 `json:"exit_ms"`
	ExitStatus *int     `json:"exit_status"`
	Error      string   `json:"error"`
}

// Failure is one failed request.
type Failure struct {
	AtS            float64 `json:"at_s"`
	Upgrade        int     `json:"upgrade"`
	SinceTriggerMS float64 `json:"since_trigger_ms"`
	Client         string  `json:"client"`
	Class          string  `json:"class"`
	Op             string  `json:"op"`
	LatencyMS      float64 `json:"latency_ms"`
	Error          string  `json:"error"`
}

// maxFirstFailures bounds Report.FirstFailures.
const maxFirstFailures = 20

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// secs is d in seconds, to the millisecond.
func secs(d time.Duration) float64 { return math.Round(float64(d)/1e6) / 1e3 }

func msPtr(d time.Duration) *float64 { v := ms(d); return &v }

func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	at := func(p float64) float64 { return ms(ds[int(float64(len(ds)-1)*p/100)]) }
	return Dist{N: len(ds), P50: at(50), P99: at(99), Max: ms(ds[len(ds)-1])}
}

func spanOf(vals []int) Span {
	if len(vals) == 0 {
		return Span{}
	}
	return Span{Start: vals[0], End: vals[len(vals)-1], Max: slices.Max(vals)}
}

// setVerdict fills in Passed, Reasons and Verdict from the reasons found
// while running and from the figures: the failure budget.
func (rep *Report) setVerdict(reasons []string) {
	if rep.Requests.Failed > rep.Config.Budget {
		var cls []string
		for _, c := range sortedKeys(rep.Requests.FailedByClass) {
			cls = append(cls, fmt.Sprintf("%s %d", c, rep.Requests.FailedByClass[c]))
		}
		var kinds []string
		for _, c := range rep.Clients {
			if c.Failed > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", c.Kind, c.Failed))
			}
		}
		reasons = append([]string{fmt.Sprintf("%d failed requests, budget %d (%s; clients: %s)",
			rep.Requests.Failed, rep.Config.Budget, strings.Join(cls, ", "), strings.Join(kinds, ", "))}, reasons...)
	}
	rep.Reasons = reasons
	if rep.Reasons == nil {
		rep.Reasons = []string{}
	}
	rep.Passed = len(reasons) == 0
	if rep.Passed {
		rep.Verdict = fmt.Sprintf("PASS: %d upgrades completed, %d requests, %d failed (budget %d), no process left behind",
			rep.Upgrades.Completed, rep.Requests.Total, rep.Requests.Failed, rep.Config.Budget)
		return
	}
	rep.Verdict = "FAIL: " + strings.Join(reasons, "; ")
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writeJSON writes the report as indented JSON.
func (rep *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeText writes the report for a reader, ending with the verdict line.
func (rep *Report) writeText(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "\nhandoff-check: %d upgrades of %s on %s (%s), %.1f s\n", c.Upgrades, strings.Join(rep.ServerCommand, " "), c.Addr, c.Trigger, rep.DurationS)
	q := rep.Requests
	fmt.Fprintf(w, "requests: %d (%.0f/s), %d failed, %d of them near an upgrade", q.Total, q.PerS, q.Failed, q.FailedNear)
	if q.Unprocessed > 0 {
		fmt.Fprintf(w, ", %d HTTP/2 streams refused unprocessed (not failures)", q.Unprocessed)
	}
	fmt.Fprintln(w)
	if len(rep.Clients) > 0 {
		classes := sortedKeys(q.FailedByClass)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "client\tworkers\trequests\tfailed\t")
		for _, cl := range classes {
			fmt.Fprintf(tw, "%s\t", cl)
		}
		fmt.Fprintln(tw)
		for _, k := range rep.Clients {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t", k.Kind, k.Workers, k.Requests, k.Failed)
			for _, cl := range classes {
				fmt.Fprintf(tw, "%d\t", k.FailedByClass[cl])
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
	l := rep.Latency
	fmt.Fprintf(w, "latency of successful requests, p50 / p99 / max:\n  steady %s\n  near upgrades %s\n", distText(l.Steady), distText(l.Near))
	if l.Slow.N > 0 {
		fmt.Fprintf(w, "  slow requests %s\n", distText(l.Slow))
	}
	u := rep.Upgrades
	fmt.Fprintf(w, "upgrades: %d of %d completed\n", u.Completed, u.Requested)
	fmt.Fprintf(w, "  trigger → new generation serving, p50 / p99 / max: %s\n", distText(u.TriggerToServing))
	fmt.Fprintf(w, "  trigger → old generation exited:                  %s\n", distText(u.TriggerToOldExit))
	fmt.Fprintf(w, "  old generation's last response → its exit:        %s\n", distText(u.LastResponseToExit))
	p := rep.Processes
	fmt.Fprintf(w, "serving process, start → end (max): fds %d → %d (%d), non-socket fds %d → %d (%d), RSS %.1f → %.1f MiB, threads %d → %d\n",
		p.FDs.Start, p.FDs.End, p.FDs.Max, p.OtherFDs.Start, p.OtherFDs.End, p.OtherFDs.Max,
		float64(p.RSSKiB.Start)/1024, float64(p.RSSKiB.End)/1024, p.Threads.Start, p.Threads.End)
	fmt.Fprintf(w, "stop: %s", p.Stop.How)
	if p.Stop.PID > 0 {
		fmt.Fprintf(w, " (pid %d)", p.Stop.PID)
	}
	if p.Stop.ExitMS != nil {
		fmt.Fprintf(w, ", exited after %.1f ms", *p.Stop.ExitMS)
	}
	if p.Stop.ExitStatus != nil {
		fmt.Fprintf(w, " with status %d", *p.Stop.ExitStatus)
	}
	if p.Stop.Error != "" {
		fmt.Fprintf(w, ", %s", p.Stop.Error)
	}
	fmt.Fprintf(w, "; left behind: %d\n", len(p.LeftBehind))
	for _, lb := range p.LeftBehind {
		fmt.Fprintf(w, "  pid %d: %s\n", lb.PID, lb.Command)
	}
	if len(rep.FirstFailures) > 0 {
		fmt.Fprintf(w, "first failures:\n")
		for _, f := range rep.FirstFailures {
			where := "before the first upgrade"
			if f.Upgrade > 0 {
				where = fmt.Sprintf("upgrade %d +%.1f ms", f.Upgrade, f.SinceTriggerMS)
			}
			fmt.Fprintf(w, "  %8.3f s (%s) %s %s (%s) after %.1f ms: %s\n", f.AtS, where, f.Client, f.Class, f.Op, f.LatencyMS, f.Error)
		}
	}
	fmt.Fprintf(w, "handoff-check: %s\n", rep.Verdict)
}

func distText(d Dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f ms", d.P50, d.P99, d.Max)
}
