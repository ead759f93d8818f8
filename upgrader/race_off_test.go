//go:build !race

package upgrader_test

const raceEnabled = false
