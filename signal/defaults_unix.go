//go:build unix

package signal

import (
	"os"
	"syscall"
)

func defaultUpgradeSignals() []os.Signal { return []os.Signal{syscall.SIGHUP} }
func defaultReloadSignals() []os.Signal  { return []os.Signal{syscall.SIGUSR2} }
func defaultStopSignals() []os.Signal    { return []os.Signal{syscall.SIGTERM, syscall.SIGINT} }
func defaultKillSignals() []os.Signal    { return []os.Signal{syscall.SIGQUIT} }
