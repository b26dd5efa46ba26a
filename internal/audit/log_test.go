package audit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// A change and its entries commit together: a change that fails leaves
// neither behind, one that succeeds leaves both.
func TestDoCommitsChangeAndEntryTogether(t *testing.T) {
	storetest.ForEachEngine(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		l := audit.New(st, func() time.Time { return at }, nil)
		boom := errors.New("boom")
		err := l.Do(ctx, func(tx *audit.Tx) error {
			if err := tx.Orgs().Create(ctx, store.Org{ID: "org_x", Name: "x", CreatedAt: at}); err != nil {
				return err
			}
			tx.Audit(store.AuditEntry{OrgID: "org_x", Actor: "test", Action: "org.created", Target: "org_x"})
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("failed change: %v", err)
		}
		if _, err := st.Orgs().Get(ctx, "org_x"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the failed change was kept: %v", err)
		}
		if got := entries(t, st, "org_x"); len(got) != 0 {
			t.Errorf("the failed change was audited: %+v", got)
		}
		err = l.Do(ctx, func(tx *audit.Tx) error {
			tx.Audit(store.AuditEntry{OrgID: "org_x", Actor: "test", Action: "org.created", Target: "org_x"})
			tx.Audit(store.AuditEntry{OrgID: "org_x", Actor: "test", Action: "token.created", Target: "tok_1"})
			return tx.Orgs().Create(ctx, store.Org{ID: "org_x", Name: "x", CreatedAt: at})
		})
		if err != nil {
			t.Fatal(err)
		}
		got := entries(t, st, "org_x")
		if len(got) != 2 || got[1].Action != "org.created" || got[0].Action != "token.created" || !got[0].At.Equal(at) {
			t.Errorf("entries of the change: %+v", got)
		}
		l.Record(ctx, store.AuditEntry{OrgID: "org_x", Actor: "test", Action: "thing.refused", Target: "t"})
		if got := entries(t, st, "org_x"); len(got) != 3 || got[0].Action != "thing.refused" {
			t.Errorf("recorded event: %+v", got)
		}
	})
}

func entries(t *testing.T, st store.Store, org string) []store.AuditEntry {
	t.Helper()
	list, err := st.Audit().List(context.Background(), store.AuditFilter{OrgID: org, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	return list
}
