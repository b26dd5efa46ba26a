// Package insights computes what an org's finished jobs say about its
// CI: queue and run times and failure rates per repository, workflow,
// job name and label set, day by day, and flaky jobs (the same job on
// the same commit that failed and passed) with the lines their failed
// attempt ended with. The API (GET /api/v1/insights, nimbus ctl insights)
// and the dashboard's insights page read it.
//
// Every report is of one org and bounded: a time range of at most
// MaxRange, at most MaxJobs jobs counted and maxScan examined, at most
// maxGroups groups and maxFlaky flaky jobs.
package insights

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Bounds of a report.
const (
	// DefaultRange is the time range of a report that names no start.
	DefaultRange = 7 * 24 * time.Hour
	// MaxRange is the longest time range of a report.
	MaxRange = 92 * 24 * time.Hour
	// DefaultJobs and MaxJobs bound the finished jobs a report counts
	// (the newest ones).
	DefaultJobs = 2000
	MaxJobs     = 10000
	// maxScan bounds the jobs a report examines (unfinished ones and
	// other repositories' included).
	maxScan = 50000
	// scanBatch is how many jobs one read of the store lists.
	scanBatch = 500
	// maxGroups and maxFlaky bound what a report lists.
	maxGroups = 200
	maxFlaky  = 50
	// MaxFailingLines is the most lines shown of a flaky job's failed
	// attempt; maxWithLines is how many flaky jobs get them.
	MaxFailingLines = 50
	maxWithLines    = 20
	maxRepo         = 200
)

var (
	// ErrInvalid: parameters the caller got wrong (the message says how).
	ErrInvalid = errors.New("invalid insights request")
	// ErrNoScope: a report without an org. None is computed.
	ErrNoScope = errors.New("insights: no org")
)

// Jobs lists an org's jobs, newest first (*jobs.Service).
type Jobs interface {
	List(ctx context.Context, f store.JobFilter) ([]store.Job, error)
}

// Lines reads the last lines of an org's job (*logs.Service).
type Lines interface {
	Tail(ctx context.Context, org, job string, n int) ([]logs.Line, error)
}

// Params is a report as a caller asks for it.
type Params struct {
	// Repo (owner/name) keeps only that repository's GitHub jobs.
	Repo string
	// Since and Until bound when the jobs were created (zero Until: now;
	// zero Since: DefaultRange before Until).
	Since, Until time.Time
	// Jobs bounds the finished jobs counted, newest first (0:
	// DefaultJobs; at most MaxJobs).
	Jobs int
	// FailingLines is how many lines of each flaky job's failed attempt
	// to include (0: none; at most MaxFailingLines).
	FailingLines int
}

// Service computes reports.
type Service struct {
	jobs  Jobs
	lines Lines
	now   func() time.Time
	log   *slog.Logger
}

// New builds a Service. lines may be nil: reports then carry no log
// lines.
func New(jobs Jobs, lines Lines, now func() time.Time, log *slog.Logger) *Service {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{jobs: jobs, lines: lines, now: now, log: log.With("component", "insights")}
}

// check validates p and sets its defaults.
func (s *Service) check(org string, p Params) (Params, error) {
	if org == "" {
		return p, ErrNoScope
	}
	bad := func(format string, args ...any) (Params, error) {
		return p, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if p.Until.IsZero() {
		p.Until = s.now()
	}
	if p.Since.IsZero() {
		p.Since = p.Until.Add(-DefaultRange)
	}
	if p.Jobs == 0 {
		p.Jobs = DefaultJobs
	}
	switch {
	case len(p.Repo) > maxRepo || !utf8.ValidString(p.Repo):
		return bad("repo: at most %d bytes of UTF-8 (owner/name)", maxRepo)
	case !p.Since.Before(p.Until):
		return bad("since: before until")
	case p.Until.Sub(p.Since) > MaxRange:
		return bad("since: at most %d days before until", int(MaxRange/(24*time.Hour)))
	case p.Jobs < 0 || p.Jobs > MaxJobs:
		return bad("jobs: 1-%d", MaxJobs)
	case p.FailingLines < 0 || p.FailingLines > MaxFailingLines:
		return bad("lines: 0-%d", MaxFailingLines)
	}
	return p, nil
}
