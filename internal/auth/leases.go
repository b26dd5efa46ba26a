package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

// leaseMaxAge bounds how long a lease answer is reused: a change whose
// notification was lost (between replicas, notifications are best effort)
// still takes effect within it.
const leaseMaxAge = time.Second

// jobLeases answers whether a job credential is alive: its job holds a live
// lease with the credential's fence and is not being cancelled. A job
// credential dies with its job (completion, cancellation, lease loss), not
// only when it expires. Answers are reused until the job's notify topic
// fires (every state change of a job notifies it, across replicas on
// PostgreSQL) and for at most leaseMaxAge, so the check costs a map lookup
// on the hot path and one database read per job and change.
type jobLeases struct {
	jobs func(ctx context.Context, id string) (store.Job, error)
	now  func() time.Time

	mu sync.Mutex
	// watch returns a channel closed at the job's next state change; nil
	// until WatchJobs: every check then reads the database.
	watch func(id string) <-chan struct{}
	m     map[string]*leaseAnswer
}

type leaseAnswer struct {
	org   string
	fence int64
	live  bool
	at    time.Time
	woken <-chan struct{}
}

// maxLeaseAnswers bounds the answers kept; past it, stale ones are dropped.
const maxLeaseAnswers = 1 << 14

func (l *jobLeases) fresh(a *leaseAnswer, now time.Time) bool {
	if a == nil || now.Sub(a.at) >= leaseMaxAge || now.Before(a.at) {
		return false
	}
	select {
	case <-a.woken:
		return false
	default:
		return true
	}
}

// check returns nil when job id, of org, holds a live lease with fence.
//
// A lease that is no longer live never becomes live again (fences only
// grow), so an answer that a lease has ended is final for its fence and
// every lower one; an answer that it is live is reused only while fresh.
func (l *jobLeases) check(ctx context.Context, id, org string, fence int64) error {
	if fence <= 0 {
		return fmt.Errorf("%w: job credential without a lease fence", ErrUnauthenticated)
	}
	now := l.now()
	l.mu.Lock()
	a := l.m[id]
	watch := l.watch
	l.mu.Unlock()
	switch {
	case a != nil && (fence < a.fence || (fence == a.fence && !a.live)):
		return fmt.Errorf("%w: the job's lease has ended", ErrUnauthenticated)
	case a != nil && fence == a.fence && a.live && l.fresh(a, now):
	default:
		var woken <-chan struct{}
		if watch != nil {
			woken = watch(id) // before the read, so a change during it is not missed
		}
		j, err := l.jobs(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("%w: unknown job", ErrUnauthenticated)
		case err != nil:
			return fmt.Errorf("check job lease: %w", err)
		}
		a = &leaseAnswer{org: j.OrgID, fence: j.Fence, live: j.State.Live() && !j.CancelRequested, at: now, woken: woken}
		if watch != nil {
			l.remember(id, a, now)
		}
	}
	switch {
	case a.org != org:
		return fmt.Errorf("%w: job org mismatch", ErrUnauthenticated)
	case a.fence != fence || !a.live:
		return fmt.Errorf("%w: the job's lease has ended", ErrUnauthenticated)
	}
	return nil
}

func (l *jobLeases) remember(id string, a *leaseAnswer, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= maxLeaseAnswers {
		for k, old := range l.m {
			if !l.fresh(old, now) {
				delete(l.m, k) // only a cost: the next check reads the database
			}
		}
	}
	if len(l.m) < maxLeaseAnswers {
		l.m[id] = a
	}
}
