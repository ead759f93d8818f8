//go:build !linux

// Command upgrade measures in-place upgrades of real server processes; it
// signals them and reads /proc, so it runs on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench/upgrade runs on Linux only")
	os.Exit(1)
}
