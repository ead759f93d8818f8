//go:build !unix

// Command demo upgrades a server under load; it signals real processes, so
// it runs on unix systems only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "the demo runs on unix systems only")
	os.Exit(1)
}
