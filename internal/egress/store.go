package egress

import (
	"context"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// Record is what is kept of one job's network: the policy it was leased
// with and, once it finished, its report.
type Record struct {
	Org string
	Job string
	// Labels are the job's labels (for suggestions per label).
	Labels   []string
	Policy   apiv1.EgressPolicy
	Report   *apiv1.EgressReport
	LeasedAt time.Time
	// ReportedAt is zero until the report came.
	ReportedAt time.Time
}

// Store keeps jobs' egress records. Implementation: internal/store/sqlstore
// (SQLite and PostgreSQL). Conformance: internal/egress/egresstest.
type Store interface {
	// SetPolicy records the policy a job was leased with (a later lease's
	// replaces an earlier one's, and clears its report).
	SetPolicy(ctx context.Context, org, job string, p apiv1.EgressPolicy, at time.Time) error
	// SetReport records a job's report. store.ErrNotFound when the job has
	// no policy recorded in org.
	SetReport(ctx context.Context, org, job string, r apiv1.EgressReport, at time.Time) error
	// Get returns a job's record; store.ErrNotFound when it has none in org.
	Get(ctx context.Context, org, job string) (Record, error)
	// Reports returns the org's records with a report made at or after
	// since, newest first, at most limit.
	Reports(ctx context.Context, org string, since time.Time, limit int) ([]Record, error)
}
