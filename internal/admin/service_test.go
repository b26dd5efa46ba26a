package admin_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// Two owners revoking each other at the same moment, on several replicas
// of the control plane: one wins, the org keeps an owner. Without the
// org's lock both revocations would see the other owner alive.
func TestLastOwnerSurvivesARace(t *testing.T) {
	storetest.ForEachEngine(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		pol, err := policy.New(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Two services: two replicas sharing the database.
		a := admin.New(admin.Options{Store: st, Policy: pol})
		b := admin.New(admin.Options{Store: st, Policy: pol})
		for round := range 10 {
			org := fmt.Sprintf("org_%d", round)
			if err := st.Orgs().Create(ctx, store.Org{ID: org, Name: org, CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			boot := auth.Principal{Kind: auth.KindUser, Org: org, ID: "tok_boot", Role: auth.RoleOwner}
			one, err := a.CreateToken(ctx, boot, "one", "owner", 0)
			if err != nil {
				t.Fatal(err)
			}
			two, err := a.CreateToken(ctx, boot, "two", "owner", 0)
			if err != nil {
				t.Fatal(err)
			}
			p1 := auth.Principal{Kind: auth.KindUser, Org: org, ID: one.ID, Role: auth.RoleOwner}
			p2 := auth.Principal{Kind: auth.KindUser, Org: org, ID: two.ID, Role: auth.RoleOwner}
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, 2)
			wg.Go(func() { <-start; _, errs[0] = a.RevokeToken(ctx, p1, two.ID) })
			wg.Go(func() { <-start; _, errs[1] = b.RevokeToken(ctx, p2, one.ID) })
			close(start)
			wg.Wait()
			lost := 0
			for _, err := range errs {
				if errors.Is(err, admin.ErrLastOwner) {
					lost++
				} else if err != nil {
					t.Fatal(err)
				}
			}
			list, err := st.Tokens().ListAPITokens(ctx, org)
			if err != nil {
				t.Fatal(err)
			}
			live := 0
			for _, tok := range list {
				if tok.RevokedAt.IsZero() {
					live++
				}
			}
			if lost != 1 || live != 1 {
				t.Fatalf("round %d: %d revocations refused, %d owner tokens live; want 1 and 1 (%v)", round, lost, live, errs)
			}
		}
	})
}

// The operator locked out of an org makes a new owner token, audited.
func TestRecoverOwner(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	ctx := context.Background()
	pol, _ := policy.New(ctx)
	s := admin.New(admin.Options{Store: st, Policy: pol})
	st.Orgs().Create(ctx, store.Org{ID: "org_1", Name: "acme", CreatedAt: time.Now()})
	tok, err := s.RecoverOwner(ctx, "acme", "recovered", "host:root", 0)
	if err != nil || tok.Role != "owner" || tok.Secret == "" || tok.OrgID != "org_1" {
		t.Fatalf("recover: %+v %v", tok, err)
	}
	if _, err := s.RecoverOwner(ctx, "nosuch", "recovered", "host:root", 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an org that does not exist: %v", err)
	}
	list, _ := st.Audit().List(ctx, store.AuditFilter{OrgID: "org_1", Limit: 10})
	if len(list) != 2 || list[0].Action != "owner.recovered" || list[0].Actor != "host:root" || list[1].Action != "token.created" {
		t.Errorf("audit: %+v", list)
	}
}
