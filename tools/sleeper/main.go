// Command sleeper sleeps until SIGTERM or SIGINT, then exits 0.
//
// It is both the pause (sandbox) image and the workload image of kdlib's real nodes:
// a static binary in a one-layer image that needs no registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
