package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
)

// retry calls f until it succeeds (nil), fails for good (f's error), or ctx
// ends (ctx's cause). Transient failures are logged and retried after a
// backoff with jitter, at most maxBackoff.
func retry(ctx context.Context, log *slog.Logger, maxBackoff time.Duration, what string, f func(context.Context) error) error {
	for failures := 0; ; failures++ {
		err := f(ctx)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case !retryable(err):
			return err
		}
		log.Warn(what+"; will retry", "err", err, "failures", failures+1)
		if !pause(ctx, apiclient.Backoff(failures, maxBackoff)) {
			return context.Cause(ctx)
		}
	}
}

// pause waits for d, or until ctx ends; it reports whether the wait was
// complete.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
