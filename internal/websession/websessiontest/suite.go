// Package websessiontest is the conformance suite every websession.Store
// passes (the embedded SQL store on SQLite and PostgreSQL).
package websessiontest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/websession"
)

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) websession.Store) {
	tests := map[string]func(t *testing.T, s websession.Store){
		"RoundTrip": testRoundTrip,
		"Unique":    testUnique,
		"Updates":   testUpdates,
		"Revoked":   testRevokedIsFinal,
		"Prune":     testPrune,
		"Names":     testNames,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func session(id string, hash byte) websession.Session {
	return websession.Session{
		ID: id, Hash: bytes.Repeat([]byte{hash}, 32), UserID: "usr_" + id, Provider: "corp", Subject: "sub-" + id,
		Email: id + "@example.com", Name: "Person " + id,
		Roles: []websession.OrgRole{{Org: "org_a", Role: auth.RoleAdmin}, {Org: "org_b", Role: auth.RoleViewer}},
		Org:   "org_a", AuthAt: t0, CreatedAt: t0, LastSeenAt: t0, ExpiresAt: t0.Add(time.Hour),
	}
}

func testRoundTrip(t *testing.T, s websession.Store) {
	ctx := context.Background()
	want := session("wss_1", 1)
	if err := s.Create(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.ByHash(ctx, want.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	if _, err := s.ByHash(ctx, bytes.Repeat([]byte{9}, 32)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown hash: %v, want ErrNotFound", err)
	}
}

func testUnique(t *testing.T, s websession.Store) {
	ctx := context.Background()
	if err := s.Create(ctx, session("wss_1", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, session("wss_2", 1)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second session with the same hash: %v, want ErrConflict", err)
	}
	if err := s.Create(ctx, session("wss_1", 2)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second session with the same id: %v, want ErrConflict", err)
	}
}

func testUpdates(t *testing.T, s websession.Store) {
	ctx := context.Background()
	a := session("wss_1", 1)
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	if err := s.Touch(ctx, a.ID, t1); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAuth(ctx, a.ID, t2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOrg(ctx, a.ID, "org_b"); err != nil {
		t.Fatal(err)
	}
	got, err := s.ByHash(ctx, a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if !got.AuthAt.Equal(t2) || !got.LastSeenAt.Equal(t1) || got.Org != "org_b" {
		t.Errorf("after updates: auth %v seen %v org %s", got.AuthAt, got.LastSeenAt, got.Org)
	}
	for name, err := range map[string]error{
		"touch":   s.Touch(ctx, "wss_none", t1),
		"setauth": s.SetAuth(ctx, "wss_none", t1),
		"setorg":  s.SetOrg(ctx, "wss_none", "org_a"),
		"revoke":  s.Revoke(ctx, "wss_none", t1),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of an unknown session: %v, want ErrNotFound", name, err)
		}
	}
}

// A revoked session stays revoked: no later update brings it back or
// moves it on.
func testRevokedIsFinal(t *testing.T, s websession.Store) {
	ctx := context.Background()
	a := session("wss_1", 1)
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, a.ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAuth(ctx, a.ID, t0.Add(2*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("step-up of a revoked session: %v, want ErrNotFound", err)
	}
	if err := s.Revoke(ctx, a.ID, t0.Add(3*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second revoke: %v, want ErrNotFound", err)
	}
	got, err := s.ByHash(ctx, a.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if !got.RevokedAt.Equal(t0.Add(time.Minute)) || !got.AuthAt.Equal(t0) {
		t.Errorf("revoked session changed: revoked %v auth %v", got.RevokedAt, got.AuthAt)
	}
}

func testPrune(t *testing.T, s websession.Store) {
	ctx := context.Background()
	old, revoked, live := session("wss_1", 1), session("wss_2", 2), session("wss_3", 3)
	old.ExpiresAt = t0.Add(-time.Hour)
	live.ExpiresAt = t0.Add(time.Hour)
	for _, x := range []websession.Session{old, revoked, live} {
		if err := s.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(ctx, revoked.ID, t0.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(ctx, t0)
	if err != nil || n != 2 {
		t.Fatalf("prune: %d, %v; want 2", n, err)
	}
	if _, err := s.ByHash(ctx, live.Hash); err != nil {
		t.Errorf("live session pruned: %v", err)
	}
	if _, err := s.ByHash(ctx, old.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired session kept: %v", err)
	}
}

func testNames(t *testing.T, s websession.Store) {
	ctx := context.Background()
	a := session("wss_1", 1)
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.Names(ctx, []string{a.UserID, "usr_nobody"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{a.UserID: a.Email}, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}
