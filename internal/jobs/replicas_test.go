package jobs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// Two replicas share one PostgreSQL database: a job submitted through one
// wakes an agent's long poll on the other at once (through LISTEN/NOTIFY),
// not when the other's poll interval (an hour here) comes round.
func TestReplicasWakeEachOther(t *testing.T) {
	dsn := storetest.DSN(t, "postgres")
	dbA, dbB := storetest.OpenPath(t, dsn), storetest.OpenPath(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	org := store.Org{ID: "org_1", Name: "o", CreatedAt: time.Now()}
	if err := dbA.Orgs().Create(ctx, org); err != nil {
		t.Fatal(err)
	}
	agent := store.Agent{ID: "agt_1", OrgID: org.ID, Name: "a", Labels: []string{"linux"}, MaxJobs: 4, CreatedAt: time.Now()}
	if err := dbA.Agents().Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	cfg := jobs.DefaultConfig()
	cfg.OrgJobRate, cfg.PollInterval = 0, time.Hour
	start := func(db *sqlstore.DB) (*jobs.Service, *notify.Notifier) {
		n := notify.New()
		go n.Connect(ctx, db.Relay("nimbus_jobs"), slog.New(slog.DiscardHandler))
		svc, err := jobs.New(jobs.Options{Store: db, Config: cfg, Notifier: n})
		if err != nil {
			t.Fatal(err)
		}
		go svc.Run(ctx)
		return svc, n
	}
	svcA, nA := start(dbA)
	svcB, nB := start(dbB)

	// Wait until both listeners are up: B hears a topic A keeps notifying.
	heard := nB.Wait("warm-up")
	for deadline := time.Now().Add(20 * time.Second); ; {
		nA.Notify("warm-up")
		select {
		case <-heard:
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("replica B never heard replica A")
			}
			continue
		}
		break
	}

	leased := make(chan *jobs.Lease, 1)
	go func() {
		l, err := svcB.Lease(ctx, agent, 30*time.Second)
		if err != nil {
			t.Errorf("lease on B: %v", err)
		}
		leased <- l
	}()
	time.Sleep(300 * time.Millisecond) // B's poll is waiting
	j, _, err := svcA.Submit(ctx, jobs.Submission{OrgID: org.ID, CreatedBy: "test", Argv: []string{"true"}, Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-leased:
		if l == nil || l.Job.ID != j.ID {
			t.Fatalf("B leased %+v, want job %s", l, j.ID)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("B's long poll was not woken by the job submitted on A")
	}
}
