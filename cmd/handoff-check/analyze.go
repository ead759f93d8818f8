//go:build linux

package main

import (
	"slices"
	"sort"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// opName names what a request asked for, in the report.
func opName(o upgradertest.Op) string {
	switch o {
	case upgradertest.OpSlow:
		return "slow"
	case upgradertest.OpStream:
		return "stream"
	}
	return "request"
}

// report makes the Report of a finished run.
func (r *runner) report() *Report {
	c := r.cfg
	lc := r.loadConfig()
	rep := &Report{
		Version:       reportVersion,
		Started:       r.started.UTC().Truncate(time.Millisecond),
		DurationS:     secs(time.Since(r.started)),
		ServerCommand: c.Server,
		Config: ConfigRep{
			Addr: c.Addr, PIDFile: c.PIDFile, Upgrades: c.Upgrades, IntervalMS: ms(c.Interval),
			Trigger: c.trigger(), Stop: c.stopHow(), UpgradeTimeoutMS: ms(c.UpgradeTimeout), Budget: c.Budget,
			Probe: c.Probe.String(), Workers: map[string]int{}, PauseMS: ms(lc.Pause), TimeoutMS: ms(c.Timeout), NearMS: ms(c.Near),
		},
		Requests:      RequestsRep{FailedByClass: map[string]int{}},
		Clients:       []ClientRep{},
		FirstFailures: []Failure{},
		Upgrades:      UpgradesRep{Requested: c.Upgrades, List: []UpgradeRep{}},
	}
	for _, q := range c.Requests {
		rep.Config.Requests = append(rep.Config.Requests, q.String())
	}
	if c.Slow != nil {
		rep.Config.Slow = c.Slow.String()
	}
	if c.Stream != nil {
		rep.Config.Stream = c.Stream.String()
	}
	byKind := map[upgradertest.Kind]*ClientRep{}
	for k := upgradertest.KeepAliveChecked; k <= upgradertest.GRPCStream; k++ {
		if n := lc.Workers[k]; n > 0 {
			rep.Config.Workers[k.String()] = n
			rep.Clients = append(rep.Clients, ClientRep{Kind: k.String(), Workers: n, FailedByClass: map[string]int{}})
		}
	}
	for i := range rep.Clients {
		for k := upgradertest.KeepAliveChecked; k <= upgradertest.GRPCStream; k++ {
			if k.String() == rep.Clients[i].Kind {
				byKind[k] = &rep.Clients[i]
			}
		}
	}

	// Upgrades: which one a moment belongs to, and the "near" windows.
	ups := r.upgrades
	upgradeAt := func(t time.Time) int { // the last upgrade triggered at or before t; 0 if none
		return sort.Search(len(ups), func(i int) bool { return ups[i].start.After(t) })
	}
	near := func(t time.Time) bool {
		i := upgradeAt(t)
		if i == 0 {
			return false
		}
		u := ups[i-1]
		if u.servingAt.IsZero() {
			return true // it never served again: near until the end
		}
		return t.Before(u.servingAt.Add(c.Near))
	}
	failedIn := make([]int, len(ups))

	var steady, nearL, slow []time.Duration
	if res := r.res; res != nil {
		q := &rep.Requests
		for _, s := range res.Samples {
			q.Total++
			cr := byKind[s.Kind]
			if cr != nil {
				cr.Requests++
			}
			switch {
			case s.Class == upgradertest.OK:
				q.OK++
				switch s.Op {
				case upgradertest.OpSlow:
					slow = append(slow, s.Latency)
				case upgradertest.OpPID:
					if near(s.Start) {
						nearL = append(nearL, s.Latency)
					} else {
						steady = append(steady, s.Latency)
					}
				}
			case s.Class == upgradertest.Unprocessed:
				q.Unprocessed++
			default:
				q.Failed++
				q.FailedByClass[s.Class.String()]++
				if cr != nil {
					cr.Failed++
					cr.FailedByClass[s.Class.String()]++
				}
				i := upgradeAt(s.Start)
				if i > 0 {
					failedIn[i-1]++
				}
				if near(s.Start) {
					q.FailedNear++
				}
				if len(rep.FirstFailures) < maxFirstFailures {
					f := Failure{AtS: secs(s.Start.Sub(r.loadStart)), Upgrade: i, Client: s.Kind.String(), Class: s.Class.String(),
						Op: opName(s.Op), LatencyMS: ms(s.Latency), Error: s.Err}
					if i > 0 {
						f.SinceTriggerMS = ms(s.Start.Sub(ups[i-1].start))
					}
					rep.FirstFailures = append(rep.FirstFailures, f)
				}
			}
		}
		if d := r.loadEnd.Sub(r.loadStart); d > 0 {
			q.PerS = float64(int(float64(q.Total)/d.Seconds()*10)) / 10
		}
	}
	rep.Latency = LatencyRep{Steady: distOf(steady), Near: distOf(nearL), Slow: distOf(slow)}

	var serving, exits, lastToExit []time.Duration
	for i, u := range ups {
		ur := UpgradeRep{N: u.n, AtS: secs(u.start.Sub(r.loadStart)), OldPID: u.oldPID, NewPID: u.newPID,
			Completed: u.completed, Error: u.err, CommandStatus: u.cmdStatus, ProbeErrors: u.probeErrs, Failed: failedIn[i]}
		if i+1 < len(r.usage) { // r.usage[0] is after the warm-up, r.usage[i+1] before upgrade i+1
			ur.OldFDs, ur.OldOtherFDs = r.usage[i+1].FDs, r.usage[i+1].OtherFDs()
		}
		if !u.servingAt.IsZero() {
			ur.ServingMS = msPtr(u.servingAt.Sub(u.start))
		}
		if !u.oldExitAt.IsZero() {
			ur.OldExitMS = msPtr(u.oldExitAt.Sub(u.start))
			last := r.oldLastResponse(u)
			ur.LastResponseToExitMS = msPtr(max(u.oldExitAt.Sub(last), 0))
		}
		if !u.cmdEnd.IsZero() {
			ur.CommandMS = msPtr(u.cmdEnd.Sub(u.start))
		}
		if u.completed {
			rep.Upgrades.Completed++
			serving = append(serving, u.servingAt.Sub(u.start))
			exits = append(exits, u.oldExitAt.Sub(u.start))
			lastToExit = append(lastToExit, time.Duration(*ur.LastResponseToExitMS*1e6))
		}
		rep.Upgrades.List = append(rep.Upgrades.List, ur)
	}
	rep.Upgrades.TriggerToServing, rep.Upgrades.TriggerToOldExit, rep.Upgrades.LastResponseToExit = distOf(serving), distOf(exits), distOf(lastToExit)

	var fds, other, rss, threads []int
	for _, u := range r.usage {
		if u.FDs == 0 {
			continue // the process was gone
		}
		fds, other, rss, threads = append(fds, u.FDs), append(other, u.OtherFDs()), append(rss, u.RSSKB), append(threads, u.Threads)
	}
	pids := []int{}
	for _, u := range ups {
		for _, p := range []int{u.oldPID, u.newPID} {
			if p > 0 && !slices.Contains(pids, p) {
				pids = append(pids, p)
			}
		}
	}
	if len(pids) == 0 && r.serving > 0 {
		pids = append(pids, r.serving)
	}
	st := r.stopped
	rep.Processes = ProcsRep{
		FDs: spanOf(fds), OtherFDs: spanOf(other), RSSKiB: spanOf(rss), Threads: spanOf(threads),
		Stop:        StopRep{How: c.stopHow(), PID: st.pid, ExitStatus: st.status, Error: st.err},
		LeftBehind:  r.left,
		ServingPIDs: pids,
	}
	if rep.Processes.LeftBehind == nil {
		rep.Processes.LeftBehind = []leftover{}
	}
	if !st.exitAt.IsZero() {
		rep.Processes.Stop.ExitMS = msPtr(st.exitAt.Sub(st.start))
	}
	rep.setVerdict(r.reasons)
	return rep
}

// oldLastResponse is the end of the last response the old generation of u
// gave: its last probe answer, or a successful request of the load on a
// connection it held (seen by sampleConns) that started before the last
// sample that saw the connection, give or take a sampling period (a
// client's port may serve a later connection to another process).
func (r *runner) oldLastResponse(u *upgradeRec) time.Time {
	last := u.oldProbeAt
	if r.res == nil {
		return last
	}
	for _, s := range r.res.Samples {
		seen, ok := u.oldConns[s.Conn]
		if !ok || s.Class != upgradertest.OK || s.Start.After(seen.Add(sampleEvery)) {
			continue
		}
		if end := s.Start.Add(s.Latency); end.After(last) && end.Before(u.oldExitAt.Add(sampleEvery)) {
			last = end
		}
	}
	return last
}
