package agent

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// liveLease is one lease the agent holds, from its grant until its job is
// completed or the lease is lost.
type liveLease struct {
	ref apiv1.LeaseRef
	ttl time.Duration
	// lose cancels the lease's context: the workload is killed and
	// nothing more is reported.
	lose context.CancelCauseFunc
	// cancel cancels the job's context: the workload is killed and the
	// job reported cancelled.
	cancel context.CancelCauseFunc
	// expiry fires lose when the lease has not been renewed in time.
	expiry    *time.Timer
	expiresAt time.Time
	// lost: the lease is gone; it is no longer renewed.
	lost bool
	// cancelled: the control plane cancelled the job (the lease is still
	// renewed until the job is reported).
	cancelled bool
}

// leaseTable holds the agent's live leases for the sync loop: what to
// renew, and where to deliver the control plane's answers.
//
// Expiry is tracked on the agent's own clock: a renewal sent at t lasts
// until t + ttl, which is never later than the server's own expiry,
// whatever the skew between the two clocks. When that time passes without
// a renewal, the lease is lost and its workload killed, so that a job
// never runs on an agent after the control plane may have handed it to
// another.
type leaseTable struct {
	log *slog.Logger

	mu     sync.Mutex
	leases map[apiv1.LeaseRef]*liveLease
	// changed is closed and replaced whenever a lease is added or removed.
	changed chan struct{}
}

func newLeaseTable(log *slog.Logger) *leaseTable {
	return &leaseTable{log: log, leases: map[apiv1.LeaseRef]*liveLease{}, changed: make(chan struct{})}
}

// add starts tracking a lease granted at grantedAt.
func (t *leaseTable) add(ref apiv1.LeaseRef, ttl time.Duration, grantedAt time.Time, lose, cancel context.CancelCauseFunc) {
	l := &liveLease{ref: ref, ttl: ttl, lose: lose, cancel: cancel, expiresAt: grantedAt.Add(ttl)}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leases[ref] = l
	// Armed under the lock, which expire takes: it sees l in the table.
	l.expiry = time.AfterFunc(time.Until(l.expiresAt), func() { t.expire(l) })
	t.notifyLocked()
}

// remove stops tracking a lease.
func (t *leaseTable) remove(ref apiv1.LeaseRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.leases[ref]; ok {
		l.expiry.Stop()
		delete(t.leases, ref)
		t.notifyLocked()
	}
}

func (t *leaseTable) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// snapshot returns the leases to renew, the shortest of their TTLs (zero
// when there are none), and a channel closed at the next change.
func (t *leaseTable) snapshot() (refs []apiv1.LeaseRef, minTTL time.Duration, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.leases {
		if l.lost {
			continue
		}
		refs = append(refs, l.ref)
		if minTTL == 0 || l.ttl < minTTL {
			minTTL = l.ttl
		}
	}
	slices.SortFunc(refs, func(a, b apiv1.LeaseRef) int { return strings.Compare(a.JobID, b.JobID) })
	return refs, minTTL, t.changed
}

// apply delivers the answer to a sync sent at sentAt.
func (t *leaseTable) apply(sentAt time.Time, statuses []apiv1.LeaseStatus) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range statuses {
		l := t.liveLocked(st.JobID)
		if l == nil {
			continue // completed meanwhile
		}
		log := t.log.With("job_id", l.ref.JobID, "fence", l.ref.Fence)
		switch st.Status {
		case apiv1.LeaseOK:
			t.renewLocked(l, sentAt)
		case apiv1.LeaseCancel:
			t.renewLocked(l, sentAt)
			if !l.cancelled {
				l.cancelled = true
				log.Info("control plane cancelled the job")
				l.cancel(ErrCanceled)
			}
		case apiv1.LeaseLost:
			log.Warn("control plane says the lease is lost: killing the workload")
			t.loseLocked(l, fmt.Errorf("%w: the control plane says so", ErrLeaseLost))
		default:
			log.Warn("unknown lease status in sync answer; lease not renewed", "status", st.Status)
		}
	}
}

// liveLocked returns the lease of jobID that is not lost, if any.
func (t *leaseTable) liveLocked(jobID string) *liveLease {
	for ref, l := range t.leases {
		if ref.JobID == jobID && !l.lost {
			return l
		}
	}
	return nil
}

func (t *leaseTable) renewLocked(l *liveLease, sentAt time.Time) {
	if l.lost || !l.expiry.Stop() {
		return // expired already: a renewal cannot bring it back
	}
	l.expiresAt = sentAt.Add(l.ttl)
	l.expiry.Reset(time.Until(l.expiresAt))
}

func (t *leaseTable) loseLocked(l *liveLease, cause error) {
	if l.lost {
		return
	}
	l.lost = true
	l.expiry.Stop()
	l.lose(cause)
}

// expire is l's expiry timer.
func (t *leaseTable) expire(l *liveLease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l.lost || t.leases[l.ref] != l {
		return
	}
	t.log.Warn("lease expired without renewal: killing the workload",
		"job_id", l.ref.JobID, "fence", l.ref.Fence, "ttl", l.ttl)
	t.loseLocked(l, fmt.Errorf("%w: not renewed before it expired at %s (ttl %v)",
		ErrLeaseLost, l.expiresAt.Format(time.RFC3339), l.ttl))
}
