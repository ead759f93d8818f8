//go:build linux

package k8stest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/handoff-go/handoff/internal/k8stest"
)

// A rolling update under load: the load runs in a helper process inside
// the cluster's network namespace (registered with RunHelper in TestMain
// as "load"), the rollout is driven through the API, and the terminations
// show whether a pod was SIGKILLed. Tests use New(t, opts), which also
// skips or fails where no cluster can run and closes it at the end.
func Example() {
	ctx := context.Background()
	c, err := k8stest.Start(ctx, k8stest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	bin := filepath.Join(os.TempDir(), "server")
	if err := k8stest.BuildStatic(ctx, "./testdata/hello", bin); err != nil {
		log.Fatal(err)
	}
	if err := c.ImportImage(ctx, "handoff.local/server:1", bin); err != nil {
		log.Fatal(err)
	}
	if err := c.Apply(ctx, manifests); err != nil { // Deployment, Service, PDB, ConfigMap
		log.Fatal(err)
	}
	if err := c.WaitRollout(ctx, "default", "hello"); err != nil {
		log.Fatal(err)
	}
	ip, err := c.WaitService(ctx, "default", "hello", 3)
	if err != nil {
		log.Fatal(err)
	}
	w, err := c.WatchTerminations(ctx, "default", "app=hello")
	if err != nil {
		log.Fatal(err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	result := make(chan []byte, 1)
	arg, _ := json.Marshal(loadArg{Addr: ip + ":80"})
	go func() {
		out, _ := c.Call(loadCtx, "load", arg) // stops on loadCtx's end
		result <- out
	}()
	if err := c.RolloutRestart(ctx, "default", "hello"); err != nil {
		log.Fatal(err)
	}
	if err := c.WaitRollout(ctx, "default", "hello"); err != nil {
		log.Fatal(err)
	}
	stopLoad()
	fmt.Printf("load: %s\n", <-result)
	terms, _ := w.Stop()
	for _, t := range terms {
		if t.Killed() {
			fmt.Println("SIGKILLed:", t)
		}
	}
}
