//go:build linux && race

package metrics_test

const raceEnabled = true
