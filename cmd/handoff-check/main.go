//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	ossignal "os/signal"
	"syscall"
)

func main() { os.Exit(check(os.Args[1:], os.Stdout, os.Stderr)) }

// check runs the command line args and returns the exit status: 0 passed,
// 1 failed, 2 a bad command line.
func check(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "handoff-check: %v\n", err)
		return 2
	}
	text, prog := stdout, stderr
	if cfg.JSON == "-" {
		text = stderr
	}
	if cfg.Quiet {
		prog = io.Discard
	}
	out := stderr
	if cfg.ServerLog != "" {
		f, err := os.OpenFile(cfg.ServerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "handoff-check: -server-log: %v\n", err)
			return 2
		}
		defer f.Close()
		out = f
	}
	p, err := newProcs(out)
	if err != nil {
		fmt.Fprintf(stderr, "handoff-check: %v\n", err)
		return 1
	}

	// An interrupt ends the run at once: the servers are killed, and the
	// report says so.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	ossignal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer ossignal.Stop(sigs)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		select {
		case s := <-sigs:
			cancel(fmt.Errorf("interrupted by %v", s))
		case <-ctx.Done():
		}
	}()

	r := &runner{cfg: cfg, p: p, prog: prog}
	r.run(ctx)
	p.end()
	cancel(nil)
	<-watching

	rep := r.report()
	rep.writeText(text)
	if cfg.JSON != "" {
		w := stdout
		if cfg.JSON != "-" {
			f, err := os.Create(cfg.JSON)
			if err != nil {
				fmt.Fprintf(stderr, "handoff-check: -json: %v\n", err)
				return 1
			}
			defer f.Close()
			w = f
		}
		if err := rep.writeJSON(w); err != nil {
			fmt.Fprintf(stderr, "handoff-check: -json: %v\n", err)
			return 1
		}
	}
	if !rep.Passed {
		return 1
	}
	return 0
}
