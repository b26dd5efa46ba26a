package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// TestJobCredentialDiesWithItsJob: a job credential is accepted only while
// its job holds the lease it was minted for. Completion, a cancel and a
// lost lease (another fence) end it at once when the job's topic is
// notified, and within a second when the notification is lost.
func TestJobCredentialDiesWithItsJob(t *testing.T) {
	ctx := context.Background()
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			s := storetest.Open(t, engine)
			c := &clock{t: time.Now().UTC()}
			ring := newRing(t, s, c)
			n := notify.New()
			a := auth.NewAuthenticator(s, ring, c.now)
			a.WatchJobs(n.Wait, func(id string) string { return "job/" + id })
			s.Orgs().Create(ctx, store.Org{ID: "org_1", Name: "one", CreatedAt: c.t})
			s.Orgs().Create(ctx, store.Org{ID: "org_2", Name: "two", CreatedAt: c.t})
			s.Agents().Create(ctx, store.Agent{ID: "agt_1", OrgID: "org_1", Name: "h", CreatedAt: c.t})

			newLease := func(id string) store.Job {
				t.Helper()
				j := store.Job{ID: id, OrgID: "org_1", Source: store.SourceAPI, State: store.JobQueued, MaxAttempts: 3,
					CreatedAt: c.t, NotBefore: c.t, UpdatedAt: c.t}
				if _, _, err := s.Jobs().Create(ctx, j); err != nil {
					t.Fatal(err)
				}
				l, err := s.Jobs().Lease(ctx, store.LeaseRequest{OrgID: "org_1", AgentID: "agt_1", MaxJobs: 10, TTL: time.Minute, Now: c.t})
				if err != nil || l.ID != id {
					t.Fatalf("lease %s: %+v %v", id, l, err)
				}
				return l
			}
			cred := func(j store.Job, org string, fence int64) string {
				tok, err := ring.Sign(auth.Claims{Kind: auth.KindJob, Subject: j.ID, Org: org, Scopes: []string{"cache.read"}, Fence: fence}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}
			accepted := func(tok string) bool {
				t.Helper()
				_, err := a.Authenticate(ctx, tok)
				if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
					t.Fatalf("authenticate: %v", err)
				}
				return err == nil
			}

			j := newLease("job_1")
			tok := cred(j, "org_1", j.Fence)
			if !accepted(tok) {
				t.Fatal("credential of a live lease refused")
			}
			for name, bad := range map[string]string{
				"stale fence":    cred(j, "org_1", j.Fence-1),
				"future fence":   cred(j, "org_1", j.Fence+1),
				"no fence":       cred(j, "org_1", 0),
				"another org":    cred(j, "org_2", j.Fence),
				"unknown job id": cred(store.Job{ID: "job_404"}, "org_1", 1),
			} {
				if accepted(bad) {
					t.Errorf("%s accepted", name)
				}
			}

			// Completion, notified: refused at once.
			if _, err := s.Jobs().Finish(ctx, j.ID, "agt_1", j.Fence, store.Outcome{State: store.JobSucceeded}, c.t); err != nil {
				t.Fatal(err)
			}
			n.Notify("job/" + j.ID)
			if accepted(tok) {
				t.Error("credential accepted after its job completed")
			}

			// A cancel whose notification is lost: the answer is reused
			// for under a second, then the cancel takes effect.
			j2 := newLease("job_2")
			tok2 := cred(j2, "org_1", j2.Fence)
			if !accepted(tok2) {
				t.Fatal("credential of a live lease refused")
			}
			if _, err := s.Jobs().RequestCancel(ctx, "org_1", j2.ID, "test", c.t); err != nil {
				t.Fatal(err)
			}
			if !accepted(tok2) {
				t.Error("answer not reused within its second (every request reads the database)")
			}
			c.t = c.t.Add(time.Second)
			if accepted(tok2) {
				t.Error("credential accepted a second after its job was cancelled")
			}

			// A lost lease: the job runs again under a higher fence; the
			// old credential is refused, the new one accepted.
			j3 := newLease("job_3")
			tok3 := cred(j3, "org_1", j3.Fence)
			if _, err := s.Jobs().ExpireLeases(ctx, c.t.Add(2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			n.Notify("job/" + j3.ID)
			if accepted(tok3) {
				t.Error("credential accepted after its lease expired")
			}
			l, err := s.Jobs().Lease(ctx, store.LeaseRequest{OrgID: "org_1", AgentID: "agt_1", MaxJobs: 10, TTL: time.Minute, Now: c.t.Add(3 * time.Minute)})
			if err != nil || l.ID != j3.ID || l.Fence <= j3.Fence {
				t.Fatalf("re-lease: %+v %v", l, err)
			}
			if accepted(tok3) {
				t.Error("credential of the lost lease accepted under the new one")
			}
			if !accepted(cred(l, "org_1", l.Fence)) {
				t.Error("credential of the new lease refused")
			}
		})
	}
}
