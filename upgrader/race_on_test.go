//go:build linux && race

package upgrader_test

const raceEnabled = true
