package bwrap

import (
	"context"
	"log/slog"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// limitPollInterval is how often a running sandbox is checked against its
// memory and disk limits. The filesystem's size bounds what a job writes
// in between.
const limitPollInterval = 100 * time.Millisecond

// limitWatch checks one sandbox against its memory and disk limits.
type limitWatch struct {
	limits  executor.Limits
	cgroup  sandboxCgroup // nil: no cgroup
	storage *jobStorage
	log     *slog.Logger
}

// over returns the first limit the sandbox went over, or nil: memory when
// the kernel's OOM killer struck in its cgroup, disk when it stores more
// than its limit or filled its filesystem.
func (w limitWatch) over() *executor.LimitError {
	if w.cgroup != nil && w.limits.Memory > 0 {
		n, err := w.cgroup.oomKills()
		if err != nil {
			w.log.Warn("read the sandbox's OOM kills", "error", err)
		} else if n > 0 {
			return &executor.LimitError{Resource: "memory", Limit: w.limits.Memory}
		}
	}
	if w.limits.Disk > 0 {
		over, detail, err := w.storage.overDisk(w.limits.Disk)
		if err != nil {
			w.log.Warn("read the sandbox's disk usage", "error", err)
		} else if over {
			return &executor.LimitError{Resource: "disk", Limit: w.limits.Disk, Detail: detail}
		}
	}
	return nil
}

// start checks the sandbox every limitPollInterval until ctx ends, and
// stops it with the first limit it goes over. The returned channel is
// closed once the watch has ended.
func (w limitWatch) start(ctx context.Context, stop context.CancelCauseFunc) <-chan struct{} {
	done := make(chan struct{})
	if (w.cgroup == nil || w.limits.Memory == 0) && w.limits.Disk == 0 {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		t := time.NewTicker(limitPollInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if over := w.over(); over != nil {
					stop(over)
					return
				}
			}
		}
	}()
	return done
}
