package upgrader

import "net"

// The systemd glue: sd_notify messages, the watchdog and socket activation.
// Every hook is a no-op unless the process runs under systemd (NOTIFY_SOCKET,
// WATCHDOG_USEC, LISTEN_FDS). The hooks are called by the rest of the
// package at these points:
//
//	sdInit        New, after the sockets were inherited (first start: read LISTEN_FDS)
//	sdActivated   Listen, before binding: an activated socket for network/addr
//	sdReady       a first generation committed (READY=1)
//	sdUpgrading   Upgrade starts (RELOADING=1, MONOTONIC_USEC, EXTEND_TIMEOUT_USEC)
//	sdRolledBack  an upgrade failed; this generation stays in charge (READY=1)
//	sdHandedOver  the new generation committed; this one drains and exits
//	sdBecameMain  a new generation's parent exited: it is the main process now
//	sdStopping    Stop (STOPPING=1)
type systemd struct{}

func (u *Upgrader) sdInit() error                                         { return nil }
func (u *Upgrader) sdActivated(network, addr string) (net.Listener, bool) { return nil, false }
func (u *Upgrader) sdReady()                                              {}
func (u *Upgrader) sdUpgrading(gen int)                                   {}
func (u *Upgrader) sdRolledBack(gen int, cause error)                     {}
func (u *Upgrader) sdHandedOver(gen, pid int)                             {}
func (u *Upgrader) sdBecameMain()                                         {}
func (u *Upgrader) sdStopping()                                           {}
