// Command pause is the pod sandbox's process: it holds the pod's namespaces and exits on
// SIGINT/SIGTERM. The local cluster tags it as containerd's sandbox_image, because there is
// no registry here to pull registry.k8s.io/pause from.
package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 it also reaps orphans, as the real pause does.
	go func() {
		for {
			var ws syscall.WaitStatus
			if _, err := syscall.Wait4(-1, &ws, 0, nil); err != nil {
				time.Sleep(time.Second) // no children yet
			}
		}
	}()
	<-sig
}
