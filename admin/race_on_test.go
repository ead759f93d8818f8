//go:build linux && race

package admin_test

const raceEnabled = true
