//go:build !unix

package signal

import "os"

// Outside unix only os.Interrupt is delivered portably (on Windows, Ctrl-C);
// upgrades, reloads and kills have no default signal there.

func defaultUpgradeSignals() []os.Signal { return []os.Signal{} }
func defaultReloadSignals() []os.Signal  { return []os.Signal{} }
func defaultStopSignals() []os.Signal    { return []os.Signal{os.Interrupt} }
func defaultKillSignals() []os.Signal    { return []os.Signal{} }
