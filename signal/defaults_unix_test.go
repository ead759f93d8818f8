//go:build unix

package signal_test

// defaultTable is how the ready record lists the default signals.
const defaultTable = `upgrade=[hangup] reload="[user defined signal 2]" stop="[interrupt terminated]" kill=[quit]`
