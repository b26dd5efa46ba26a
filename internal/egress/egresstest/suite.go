// Package egresstest is the conformance suite every egress.Store passes
// (the embedded SQL store on SQLite and PostgreSQL).
package egresstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/egress"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Env is a store under test.
type Env struct {
	Store egress.Store
	// NewJob returns the id of a new job of org.
	NewJob func(t *testing.T, org string) string
}

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) Env) {
	tests := map[string]func(t *testing.T, e Env){
		"RoundTrip":  testRoundTrip,
		"NewLease":   testNewLease,
		"OrgScope":   testOrgScope,
		"Reports":    testReports,
		"NoPolicyNo": testReportWithoutPolicy,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var (
	policy = apiv1.EgressPolicy{Mode: "allow-list", Allow: []string{"example.com", "10.0.0.0/8"}}
	report = apiv1.EgressReport{Mode: "allow-list", Allow: []string{"example.com"},
		Names:    []apiv1.EgressName{{Name: "example.com", Type: "A", Verdict: "allowed", Count: 2, Answers: []string{"192.0.2.1"}}},
		Allowed:  []apiv1.EgressConn{{Addr: "192.0.2.1", Proto: "tcp", Port: 443, Count: 3}},
		Refused:  []apiv1.EgressConn{{Addr: "169.254.169.254", Proto: "tcp", Port: 80, Count: 1}},
		BytesOut: 100, BytesIn: 2000}
)

func testRoundTrip(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	if err := e.Store.SetPolicy(ctx, "org_a", job, policy, t0); err != nil {
		t.Fatal(err)
	}
	got, err := e.Store.Get(ctx, "org_a", job)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(policy, got.Policy); diff != "" || got.Report != nil || !got.LeasedAt.Equal(t0) {
		t.Fatalf("after SetPolicy: %+v (-want +got policy):\n%s", got, diff)
	}
	if err := e.Store.SetReport(ctx, "org_a", job, report, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err = e.Store.Get(ctx, "org_a", job)
	if err != nil {
		t.Fatal(err)
	}
	if got.Report == nil {
		t.Fatal("no report after SetReport")
	}
	if diff := cmp.Diff(report, *got.Report); diff != "" {
		t.Fatalf("report (-want +got):\n%s", diff)
	}
	if !got.ReportedAt.Equal(t0.Add(time.Minute)) || got.Org != "org_a" || got.Job != job {
		t.Fatalf("record: %+v", got)
	}
}

func testNewLease(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	mustNil(t, e.Store.SetPolicy(ctx, "org_a", job, policy, t0))
	mustNil(t, e.Store.SetReport(ctx, "org_a", job, report, t0))
	p2 := apiv1.EgressPolicy{Mode: "audit"}
	mustNil(t, e.Store.SetPolicy(ctx, "org_a", job, p2, t0.Add(time.Hour)))
	got, err := e.Store.Get(ctx, "org_a", job)
	if err != nil {
		t.Fatal(err)
	}
	if got.Policy.Mode != "audit" || got.Report != nil || !got.ReportedAt.IsZero() {
		t.Fatalf("after a new lease: %+v, want the new policy and no report", got)
	}
}

func testOrgScope(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	e.NewJob(t, "org_b")
	mustNil(t, e.Store.SetPolicy(ctx, "org_a", job, policy, t0))
	if _, err := e.Store.Get(ctx, "org_b", job); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another org's Get: %v, want ErrNotFound", err)
	}
	if err := e.Store.SetReport(ctx, "org_b", job, report, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another org's SetReport: %v, want ErrNotFound", err)
	}
	// Another org cannot overwrite the policy either.
	_ = e.Store.SetPolicy(ctx, "org_b", job, apiv1.EgressPolicy{Mode: "audit"}, t0)
	got, err := e.Store.Get(ctx, "org_a", job)
	if err != nil || got.Policy.Mode != "allow-list" || got.Org != "org_a" {
		t.Fatalf("after another org's SetPolicy: %+v %v", got, err)
	}
	mustNil(t, e.Store.SetReport(ctx, "org_a", job, report, t0))
	if rs, err := e.Store.Reports(ctx, "org_b", time.Time{}, 100); err != nil || len(rs) != 0 {
		t.Fatalf("another org's Reports: %v %v", rs, err)
	}
}

func testReports(t *testing.T, e Env) {
	ctx := context.Background()
	var jobs []string
	for i := range 5 {
		j := e.NewJob(t, "org_a")
		jobs = append(jobs, j)
		mustNil(t, e.Store.SetPolicy(ctx, "org_a", j, policy, t0))
		if i < 4 {
			mustNil(t, e.Store.SetReport(ctx, "org_a", j, report, t0.Add(time.Duration(i)*time.Hour)))
		}
	}
	rs, err := e.Store.Reports(ctx, "org_a", t0.Add(time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Job)
		if r.Report == nil {
			t.Errorf("record %s: no report", r.Job)
		}
	}
	if diff := cmp.Diff([]string{jobs[3], jobs[2]}, got); diff != "" {
		t.Fatalf("reports since t0+1h, at most 2, newest first (-want +got):\n%s", diff)
	}
}

func testReportWithoutPolicy(t *testing.T, e Env) {
	job := e.NewJob(t, "org_a")
	if err := e.Store.SetReport(context.Background(), "org_a", job, report, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("report without a policy: %v, want ErrNotFound", err)
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
