//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "handoff-check runs on Linux only: it finds the server's processes, their connections and their exits in /proc, sock_diag and pidfds")
	os.Exit(2)
}
