package app

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// secondSignal calls stop when another SIGINT or SIGTERM arrives, or never
// if ctx ends first.
func secondSignal(ctx context.Context, stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(ch)
	select {
	case <-ch:
		stop()
	case <-ctx.Done():
	}
}
