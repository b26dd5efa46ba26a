// Package audit is the one way Nimbus writes its append-only audit log.
// A state change and its entries commit together (Do): a change that is
// made is recorded, one that is rolled back is not. An event that changes
// nothing in the database (a refusal, a certificate issued) is recorded on
// its own (Record). Services call these; HTTP handlers never write the
// audit log themselves.
package audit

import (
	"context"
	"log/slog"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Log writes the audit log of a store. It is safe for concurrent use.
type Log struct {
	store store.Store
	now   func() time.Time
	log   *slog.Logger
}

// New returns a Log; now stamps entries without a time (nil: time.Now),
// log receives the entries Record could not write (nil: discarded).
func New(st store.Store, now func() time.Time, log *slog.Logger) *Log {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Log{store: st, now: now, log: log.With("component", "audit")}
}

// Tx is the transaction of one Do: the store's repositories, and the
// entries that commit with the change. Its Audit method hides the
// repositories' audit log: entries go through Tx.Audit.
type Tx struct {
	store.Repos
	entries []store.AuditEntry
}

// Audit records e with the change: it is appended when the transaction
// commits, not before and not otherwise.
func (t *Tx) Audit(e store.AuditEntry) { t.entries = append(t.entries, e) }

// Do makes a change and records it: change runs in one transaction, and
// the entries it gives Tx.Audit are appended in the same transaction, so
// the change and its record commit together or not at all. Entries
// without a time get the current one.
func (l *Log) Do(ctx context.Context, change func(tx *Tx) error) error {
	return l.store.InTx(ctx, func(r store.Repos) error {
		tx := &Tx{Repos: r}
		if err := change(tx); err != nil {
			return err
		}
		for _, e := range tx.entries {
			if e.At.IsZero() {
				e.At = l.now()
			}
			if err := r.Audit().Append(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Record appends an entry for an event that changed nothing in the
// database, or whose change is already made elsewhere (a refused report, a
// certificate issued, a key rotated by the keyring). It is best effort: the
// event has happened, so a failure to record it is logged, not returned.
// An entry without a time gets the current one.
func (l *Log) Record(ctx context.Context, e store.AuditEntry) {
	if e.At.IsZero() {
		e.At = l.now()
	}
	if err := l.store.Audit().Append(context.WithoutCancel(ctx), e); err != nil {
		l.log.Error("record audit entry", "action", e.Action, "target", e.Target, "org", e.OrgID, "err", err)
	}
}

// Actor names a principal in entries: "user:tok_…", "agent:agt_…",
// "job:job_…".
func Actor(p auth.Principal) string { return string(p.Kind) + ":" + p.ID }
