package plugin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
)

// Defaults for Options.
const (
	DefaultStartTimeout      = 30 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultRestartBackoff    = 100 * time.Millisecond
	DefaultMaxRestartBackoff = 30 * time.Second
	DefaultHistory           = 16
)

// CrashMode says what a Call does while the plugin process that would answer
// it is being restarted after a crash.
type CrashMode int

const (
	// WaitForRestart makes the call wait for the restarted process, bounded
	// by the call's context. The default.
	WaitForRestart CrashMode = iota
	// FailFast makes the call return ErrRestarting at once.
	FailFast
)

// Options configures a Manager. Handshake, Plugins and Path are required;
// the zero value of every other field means its default.
type Options[T any] struct {
	// Handshake and Plugins are what goplugin.ClientConfig takes: the
	// go-plugin handshake and the plugin map.
	Handshake goplugin.HandshakeConfig
	Plugins   goplugin.PluginSet

	// Name is the key in Plugins to dispense. Default: the only key.
	Name string

	// Path is the plugin binary New starts, and Reload and Watch load
	// again.
	Path string

	// Args are passed to the plugin binary.
	Args []string

	// Protocols are the go-plugin protocols accepted. Default: gRPC and net/rpc.
	Protocols []goplugin.Protocol

	// Checksums, when not empty, is the allow-list of sha256 sums (32 bytes
	// each) a binary must match to be started. Default: any binary.
	Checksums [][]byte

	// StageDir is where binaries are copied, each under its sha256, before
	// they are verified and started. Default: the Manager's private
	// directory (see the package documentation), which Close removes. A
	// directory given here is created with mode 0700 if needed and kept.
	StageDir string

	// Health checks a started plugin before it takes calls, after every
	// start and restart. Default: go-plugin's Ping (the gRPC health service
	// or the net/rpc control ping). ctx carries the start deadline.
	Health func(ctx context.Context, p T) error

	// StartTimeout bounds exec, handshake, dispense and health check of one
	// start. Default DefaultStartTimeout.
	StartTimeout time.Duration

	// DrainTimeout is how long a replaced version's in-flight calls may run
	// before its process is killed anyway. Default DefaultDrainTimeout.
	DrainTimeout time.Duration

	// RestartBackoff and MaxRestartBackoff bound the wait before restarting a
	// crashed plugin: none for the first crash, then RestartBackoff, doubled
	// after each further crash or failed restart up to MaxRestartBackoff. A
	// process that served for MaxRestartBackoff resets it.
	// Defaults DefaultRestartBackoff and DefaultMaxRestartBackoff; a
	// negative RestartBackoff means none: every restart is immediate.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration

	// OnCrash is what calls do while a crashed plugin restarts.
	// Default WaitForRestart.
	OnCrash CrashMode

	// Canary, when Canary.Percent > 0, makes Reload (and so Watch) start a
	// new version as a canary rather than swap it in. Default: no canaries.
	Canary CanaryOptions

	// History is the number of versions Versions remembers, and whose staged
	// binaries are kept. Default DefaultHistory; negative: none (Rollback
	// still returns to the previous stable version).
	History int

	// Logger receives the manager's records, go-plugin's, and the plugin's
	// stderr. Default: nil, which discards them.
	Logger *slog.Logger

	// OnEvent is called synchronously for every event; it must not block
	// and must not call the Manager's swap methods (they would see ErrBusy).
	// Default: none.
	OnEvent func(Event)

	hooks stageHooks // test seams
}

// withDefaults checks o and returns a copy with every default filled in.
func (o Options[T]) withDefaults() (Options[T], error) {
	if o.Path == "" {
		return o, errors.New("plugin: Options.Path is empty")
	}
	abs, err := filepath.Abs(o.Path)
	if err != nil {
		return o, fmt.Errorf("plugin: %w", err)
	}
	o.Path = abs
	if len(o.Plugins) == 0 {
		return o, errors.New("plugin: Options.Plugins is empty")
	}
	if o.Name == "" {
		if len(o.Plugins) != 1 {
			return o, errors.New("plugin: Options.Name is empty and Plugins has several entries")
		}
		for k := range o.Plugins {
			o.Name = k
		}
	}
	if _, ok := o.Plugins[o.Name]; !ok {
		return o, fmt.Errorf("plugin: Options.Plugins has no %q", o.Name)
	}
	for _, c := range o.Checksums {
		if len(c) != sha256.Size {
			return o, fmt.Errorf("plugin: Options.Checksums holds a %d-byte sum; sha256 sums have %d", len(c), sha256.Size)
		}
	}
	if o.Protocols == nil {
		o.Protocols = []goplugin.Protocol{goplugin.ProtocolGRPC, goplugin.ProtocolNetRPC}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	switch {
	case o.RestartBackoff == 0:
		o.RestartBackoff = DefaultRestartBackoff
	case o.RestartBackoff < 0:
		o.RestartBackoff = 0
	}
	if o.MaxRestartBackoff <= 0 {
		o.MaxRestartBackoff = DefaultMaxRestartBackoff
	}
	switch {
	case o.History == 0:
		o.History = DefaultHistory
	case o.History < 0:
		o.History = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Canary = o.Canary.withDefaults()
	return o, nil
}
