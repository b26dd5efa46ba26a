package app_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

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
