//go:build linux && !race

package handoff_test

const raceEnabled = false
