package app_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/auth"
)

// Rotating the master key with the server stopped: afterwards the server
// starts with the new key alone, and every credential and secret still
// works.
func TestRotateMasterKey(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	ctx := context.Background()
	var en apiv1.Enrolled
	if _, err := h.Client(h.JoinToken("linux")).Do(ctx, "POST", apiv1.PathAgentEnroll, apiv1.Enroll{Name: "a", MaxJobs: 1}, &en); err != nil {
		t.Fatal(err)
	}
	before, _ := auth.LoadMasterKeys(h.Config.MasterKeyFile)
	h.Stop()
	args := []string{"rotate-master-key", "--data-dir", h.Config.DataDir, "--database", h.Config.Database}
	var out strings.Builder
	if code := app.AdminMain(ctx, args, &out, io.Discard, os.Getenv); code != 0 {
		t.Fatalf("exit %d", code)
	}
	after, err := auth.LoadMasterKeys(h.Config.MasterKeyFile)
	if err != nil || len(after) != 1 || after[0].ID == before[0].ID {
		t.Fatalf("key file after: %v %v", after, err)
	}
	if !strings.Contains(out.String(), "resealed") {
		t.Errorf("output: %q", out.String())
	}
	h.Restart()
	// The agent's credential (signed before) verifies; the webhook secret opens.
	if _, err := h.Client(en.Credential).Do(ctx, "POST", apiv1.PathAgentSync, apiv1.Sync{}, nil); err != nil {
		t.Errorf("agent credential after rotation: %v", err)
	}
	var rot apiv1.WebhookSecret
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/webhook-secrets/rotate", struct{}{}, &rot); err != nil || rot.Count != 2 {
		t.Errorf("webhook secrets after rotation: %+v %v", rot, err)
	}
}

// Issue 16, item 2: an org whose owner tokens are all gone (here revoked
// behind the API's back, as by an older version) gets a new owner from the
// server's host, with the server running, and the recovery is audited.
func TestRecoverOwner(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	ctx := context.Background()
	who, err := h.Owner().Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.CP.Store.Tokens().RevokeAPIToken(ctx, h.OrgID, who.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	// What a token stands for is kept in memory for under a second.
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := h.Owner().Whoami(ctx)
		if apiclient.IsStatus(err, http.StatusUnauthorized) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked owner: %v, want 401 within a second", err)
		}
	}
	var out, errs strings.Builder
	args := []string{"recover-owner", "--data-dir", h.Config.DataDir, "--database", h.Config.Database, "--name", "back"}
	env := func(k string) string { return map[string]string{"USER": "operator"}[k] }
	if code := app.AdminMain(ctx, args, &out, &errs, env); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	owner := h.Client(strings.TrimSpace(out.String()))
	me, err := owner.Whoami(ctx)
	if err != nil || me.Role != "owner" || me.Org != h.OrgID || me.Name != "back" {
		t.Fatalf("the recovered owner: %+v %v", me, err)
	}
	audit, err := owner.ListAudit(ctx, apiclient.AuditQuery{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if e := audit.Entries[0]; e.Action != "owner.recovered" || e.Actor != "host:operator" || e.Target != me.ID {
		t.Errorf("newest audit entry: %+v, want owner.recovered by host:operator", e)
	}
	if code := app.AdminMain(ctx, []string{"recover-owner", "--data-dir", h.Config.DataDir, "--database", h.Config.Database,
		"--org", "nosuch"}, io.Discard, io.Discard, env); code != 1 {
		t.Errorf("an org that does not exist: exit %d, want 1", code)
	}
}
