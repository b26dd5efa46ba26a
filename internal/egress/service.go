// Package egress is the control plane's side of jobs' networks: it decides
// each job's egress policy from the operator's rules (by org, labels and
// source), records it with the job and in the audit log, keeps the report
// the job's agent sends back, and turns audit-mode reports into proposed
// allow-lists. The data plane that enforces a policy is the agent's
// (internal/netpolicy).
package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/store"
)

// ErrInvalid wraps a report that breaks the document's bounds.
var ErrInvalid = errors.New("invalid egress report")

// Bounds of a report an agent may send (the agent's own bounds, with
// room): a report past them is refused, not stored.
const (
	maxReportNames = 4096
	maxReportConns = 4 * 4096
	maxStringLen   = 512
	maxListLen     = 64
)

// Service decides, records and reports jobs' egress.
type Service struct {
	store Store
	audit *audit.Log
	rules Rules
	now   func() time.Time
}

// New returns a Service keeping records in s, with one audit entry in
// st's log per lease (the policy in force).
func New(s Store, st store.Store, rules Rules, log *slog.Logger) *Service {
	return &Service{store: s, audit: audit.New(st, nil, log), rules: rules, now: time.Now}
}

// Lease decides the policy of a job being leased, records it with the
// job and audits it.
func (s *Service) Lease(ctx context.Context, j store.Job, actor string) (apiv1.EgressPolicy, error) {
	p := s.rules.For(JobFacts{Org: j.OrgID, Labels: j.Labels, Source: j.Source})
	if err := netpolicy.PolicyFrom(p).Validate(); err != nil {
		return p, fmt.Errorf("egress policy of %s: %w", j.ID, err)
	}
	now := s.now()
	if err := s.store.SetPolicy(ctx, j.OrgID, j.ID, p, now); err != nil {
		return p, err
	}
	allow := abbreviate(strings.Join(p.Allow, " "), 2000)
	// The policy is recorded with the job above: its audit entry is the
	// record of a decision made (best effort, like other such events).
	s.audit.Record(ctx, store.AuditEntry{At: now, OrgID: j.OrgID, Actor: actor, Action: "job.egress_policy", Target: j.ID,
		Detail: map[string]string{"mode": p.Mode, "allow": allow, "fence": strconv.FormatInt(j.Fence, 10)}})
	return p, nil
}

// Session decides the policy of a remote Bazel session being started
// (rules with source rbs) and audits it. A policy the rules make invalid
// (too long) falls back to offline.
func (s *Service) Session(ctx context.Context, org, session, actor string) apiv1.EgressPolicy {
	p := s.rules.For(JobFacts{Org: org, Source: SourceRBS})
	if err := netpolicy.PolicyFrom(p).Validate(); err != nil {
		p = apiv1.EgressPolicy{Mode: string(netpolicy.ModeOffline)}
	}
	s.audit.Record(ctx, store.AuditEntry{OrgID: org, Actor: actor, Action: "session.egress_policy", Target: session,
		Detail: map[string]string{"mode": p.Mode, "allow": abbreviate(strings.Join(p.Allow, " "), 2000)}})
	return p
}

// Report stores what a finished job did on the network.
func (s *Service) Report(ctx context.Context, org, job string, r apiv1.EgressReport) error {
	if err := ValidateReport(r); err != nil {
		return err
	}
	return s.store.SetReport(ctx, org, job, r, s.now())
}

// Get returns a job's egress record (store.ErrNotFound when it has none
// in org).
func (s *Service) Get(ctx context.Context, org, job string) (Record, error) {
	return s.store.Get(ctx, org, job)
}

// ValidateReport checks a report against the document's bounds (errors
// wrap ErrInvalid).
func ValidateReport(r apiv1.EgressReport) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	if _, err := netpolicy.ParseMode(r.Mode); err != nil {
		return bad("mode: %v", err)
	}
	if len(r.Names) > maxReportNames {
		return bad("names: %d, at most %d", len(r.Names), maxReportNames)
	}
	if n := len(r.Allowed) + len(r.Refused) + len(r.Unlisted); n > maxReportConns {
		return bad("connections: %d, at most %d", n, maxReportConns)
	}
	if len(r.Allow) > apiv1.MaxEgressAllow {
		return bad("allow: %d entries, at most %d", len(r.Allow), apiv1.MaxEgressAllow)
	}
	long := func(ss ...string) bool {
		for _, s := range ss {
			if len(s) > maxStringLen {
				return true
			}
		}
		return false
	}
	for _, n := range r.Names {
		if long(n.Name, n.Type, n.Verdict) || long(n.Answers...) || long(n.Blocked...) ||
			len(n.Answers) > maxListLen || len(n.Blocked) > maxListLen {
			return bad("name %.64q: field too long", n.Name)
		}
	}
	for _, c := range slices.Concat(r.Allowed, r.Refused, r.Unlisted) {
		if long(c.Addr, c.Proto) {
			return bad("connection %.64q: field too long", c.Addr)
		}
	}
	if long(r.Allow...) {
		return bad("allow: entry too long")
	}
	return nil
}

// Suggestion is a proposed allow-list for the jobs with one label, from
// their reports: what they resolved or connected to that their policy
// did not allow (audit mode), and what it did.
type Suggestion struct {
	Label string
	Since time.Time
	// Jobs is how many reports were read.
	Jobs  int
	Allow []SuggestedEntry
}

// SuggestedEntry is one proposed allow-list entry.
type SuggestedEntry struct {
	Entry string
	// Jobs is how many jobs needed it; Count how often in all.
	Jobs  int
	Count int
	// Listed: the entry is allowed already (kept so the proposal is a
	// complete list).
	Listed bool
}

// maxSuggestReports bounds the reports one suggestion reads.
const maxSuggestReports = 10000

// Suggest proposes an allow-list for the org's jobs labelled label from
// their reports since since.
func (s *Service) Suggest(ctx context.Context, org, label string, since time.Time) (Suggestion, error) {
	recs, err := s.store.Reports(ctx, org, since, maxSuggestReports)
	if err != nil {
		return Suggestion{}, err
	}
	sug := Suggestion{Label: label, Since: since}
	type acc struct {
		jobs, count int
		listed      bool
	}
	entries := map[string]*acc{}
	add := func(entry string, count int, listed bool, seen map[string]bool) {
		a := entries[entry]
		if a == nil {
			a = &acc{}
			entries[entry] = a
		}
		a.count += count
		a.listed = a.listed || listed
		if !seen[entry] {
			seen[entry] = true
			a.jobs++
		}
	}
	for _, r := range recs {
		if r.Report == nil || (label != "" && !slices.Contains(r.Labels, label)) {
			continue
		}
		sug.Jobs++
		seen := map[string]bool{}
		resolved := map[string]bool{}
		for _, n := range r.Report.Names {
			if n.Name == netpolicy.PlatformName {
				continue
			}
			for _, a := range n.Answers {
				resolved[a] = true
			}
			switch n.Verdict {
			case apiv1.VerdictUnlisted:
				add(n.Name, n.Count, false, seen)
			case apiv1.VerdictAllowed:
				add(n.Name, n.Count, true, seen)
			}
		}
		// Addresses reached without a name: a CIDR of one address each.
		for _, c := range r.Report.Unlisted {
			if resolved[c.Addr] {
				continue
			}
			a, err := netip.ParseAddr(c.Addr)
			if err != nil {
				continue
			}
			add(netip.PrefixFrom(a, a.BitLen()).String(), int(c.Count), false, seen)
		}
	}
	for e, a := range entries {
		sug.Allow = append(sug.Allow, SuggestedEntry{Entry: e, Jobs: a.jobs, Count: a.count, Listed: a.listed})
	}
	slices.SortFunc(sug.Allow, func(a, b SuggestedEntry) int {
		if a.Jobs != b.Jobs {
			return b.Jobs - a.Jobs
		}
		return strings.Compare(a.Entry, b.Entry)
	})
	return sug, nil
}

// abbreviate cuts s to n bytes (at a character boundary), marking the cut.
func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + " …"
}
