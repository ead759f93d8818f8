// Command pause is the cluster's pause image and the init (PID 1) of the
// namespaces the cluster runs in: it reaps every child it inherits and
// exits on SIGINT or SIGTERM. Kubernetes' own pause does the same in C.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGINT, syscall.SIGTERM)
	for {
		if s := <-sigs; s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
