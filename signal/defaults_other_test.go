//go:build !unix

package signal_test

// defaultTable is how the ready record lists the default signals: outside
// unix, only os.Interrupt, for stop.
const defaultTable = `stop=[interrupt]`
