package jobs

import (
	"context"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

// FollowLogs calls fn with the job's output after the cursor, in order,
// as it arrives, until the job has finished and everything is delivered
// (follow) or until what is stored now is delivered (!follow).
func (s *Service) FollowLogs(ctx context.Context, org, id string, after store.LogCursor, follow bool, fn func([]store.LogChunk) error) error {
	if _, err := s.Get(ctx, org, id); err != nil {
		return err
	}
	for {
		woken := s.notify.Wait(jobTopic(id))
		chunks, err := s.store.Logs().Read(ctx, id, after, 1000)
		if err != nil {
			return err
		}
		if len(chunks) > 0 {
			if err := fn(chunks); err != nil {
				return err
			}
			last := chunks[len(chunks)-1]
			after = store.LogCursor{Fence: last.Fence, Seq: last.Seq}
			continue
		}
		if !follow {
			return nil
		}
		j, err := s.store.Jobs().Get(ctx, id)
		if err != nil {
			return err
		}
		if j.State.Terminal() {
			// Chunks may have landed between the read and the state
			// check: read once more before ending.
			rest, err := s.store.Logs().Read(ctx, id, after, 1000)
			if err != nil {
				return err
			}
			if len(rest) > 0 {
				if err := fn(rest); err != nil {
					return err
				}
				last := rest[len(rest)-1]
				after = store.LogCursor{Fence: last.Fence, Seq: last.Seq}
				continue
			}
			return nil
		}
		t := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-woken:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}
