//go:build !unix

package signal_test

// setUpProcess has nothing to do outside unix: the tests that send real
// signals and start helper processes are unix-only.
func setUpProcess() {}
