package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
)

// Issue 16, item 2: an admin revoked the owner's only token and locked the
// owner out. Management of tokens and agents is role-monotonic (only roles
// at or below the caller's), and an org's last owner token cannot be
// revoked. Threat model 000: "Web Dashboard, Tampering: no permission
// matrix regression tests"; priority gap 1 (RBAC policies with golden
// allow/deny fixtures).
func TestAdminCannotLockOutTheOwner(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	owner, admin := w.tokens["a"][auth.RoleOwner], w.tokens["a"][auth.RoleAdmin]
	me, err := owner.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A second owner, so that the last-owner rule does not hide the role
	// rule below.
	second, err := owner.CreateToken(ctx, apiv1.CreateToken{Name: "owner2", Role: "owner"})
	if err != nil {
		t.Fatal(err)
	}
	// The attack: the admin revokes the owner's token.
	if _, err := admin.RevokeToken(ctx, me.ID); !apiclient.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("admin revokes the owner's token: %v, want 403", err)
	}
	if _, err := owner.Whoami(ctx); err != nil {
		t.Fatalf("the owner after the admin's attempt: %v", err)
	}
	// Nor may it disable an agent the owner enrolled.
	jt, err := owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	en, err := w.h.Client(jt.Token).Enroll(ctx, apiv1.Enroll{Name: "owners-agent", MaxJobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DisableAgent(ctx, en.AgentID); !apiclient.IsStatus(err, http.StatusForbidden) {
		t.Errorf("admin disables the owner's agent: %v, want 403", err)
	}
	if _, err := w.h.Client(en.Credential).Sync(ctx, apiv1.Sync{}); err != nil {
		t.Errorf("the owner's agent after the admin's attempt: %v", err)
	}
	// What is at or below the admin's role stays the admin's to manage.
	dev, err := admin.CreateToken(ctx, apiv1.CreateToken{Name: "dev2", Role: "developer"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RevokeToken(ctx, dev.ID); err != nil {
		t.Errorf("admin revokes a developer's token: %v", err)
	}
	if _, err := admin.DisableAgent(ctx, w.agent["a"]); err != nil {
		t.Errorf("admin disables an admin's agent: %v", err)
	}
	if _, err := owner.DisableAgent(ctx, en.AgentID); err != nil {
		t.Errorf("the owner disables its own agent: %v", err)
	}
	// An owner token may go while another lives; the last one may not,
	// not even by its own hand.
	if _, err := owner.RevokeToken(ctx, second.ID); err != nil {
		t.Fatalf("an owner token revoked while another lives: %v", err)
	}
	if _, err := owner.RevokeToken(ctx, me.ID); !apiclient.IsStatus(err, http.StatusConflict) {
		t.Fatalf("the last owner token revoked: %v, want 409", err)
	}
	if _, err := owner.Whoami(ctx); err != nil {
		t.Errorf("the last owner: %v", err)
	}
}
