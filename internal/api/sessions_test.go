package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Remote Bazel's routes: sessions are visible to and stoppable by their own
// user (and the org's admins), never by another org; the agent routes take
// only agent credentials.
func TestMatrixSessions(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	st := w.h.CP.Store
	sess := map[string]string{}
	dev := map[string]string{} // org -> the developer token's id: its remote Bazel user
	for _, org := range []string{"a", "b"} {
		who, err := w.tokens[org][auth.RoleDeveloper].Whoami(ctx)
		if err != nil {
			t.Fatal(err)
		}
		dev[org] = who.ID
		id := ids.New("ses")
		now := time.Now()
		err = st.Sessions().Create(ctx, store.Session{ID: id, OrgID: w.orgID[org], User: who.ID, Key: "k-" + org, RepoHash: "r",
			InstallMD5: "0123456789abcdef0123456789abcdef", Request: `{"workspace":"/w"}`, AgentID: w.agent[org], State: store.SessionReady,
			Address: "10.0.0.1:7443", CreatedAt: now, UpdatedAt: now, LastUsedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		sess[org] = id
	}
	stop := func(org string, role auth.Role, target string) int {
		return status(t, w.tokens[org][role], "POST", "/api/v1/sessions/"+sess[target]+"/stop", struct{}{})
	}
	// Another org, whatever the role: not found.
	for role := range w.tokens["b"] {
		if got := stop("b", role, "a"); got != http.StatusNotFound {
			t.Errorf("org b %s stops org a's session: %d", role, got)
		}
	}
	// Same org: a viewer may not, another developer-level user may not, the
	// owner of the session and an admin may.
	if got := stop("a", auth.RoleViewer, "a"); got != http.StatusForbidden && got != http.StatusNotFound {
		t.Errorf("viewer stops a session: %d", got)
	}
	if got := stop("a", auth.RoleCI, "a"); got != http.StatusNotFound {
		t.Errorf("another user (ci) stops the developer's session: %d", got)
	}
	if got := stop("a", auth.RoleDeveloper, "a"); got != http.StatusOK {
		t.Errorf("the session's own user stops it: %d", got)
	}
	if got := stop("b", auth.RoleAdmin, "b"); got != http.StatusOK {
		t.Errorf("an admin stops a session of the org: %d", got)
	}
	// Listing: the developer sees their own; the other org sees none of it.
	for org, c := range map[string]struct {
		role auth.Role
		see  bool
	}{"a": {auth.RoleDeveloper, true}, "b": {auth.RoleAdmin, false}} {
		resp, err := w.tokens[org][c.role].Raw(ctx, "GET", "/api/v1/sessions?all=1", nil)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(resp)
		if strings.Contains(body, sess["a"]) != c.see {
			t.Errorf("org %s lists org a's session: %v (%s)", org, !c.see, body)
		}
	}
	// GetServer takes a developer; a viewer is refused, another kind of
	// credential too, and no credential is 401.
	_, csr, _ := pki.NewCSR()
	body := map[string]any{"repo_hash": rbs.RepoHash("devbox", "/home/x/w"), "workspace": "/home/x/w", "output_base": "/home/x/o", "output_user_root": "/home/x",
		"install_md5": "0123456789abcdef0123456789abcdef", "csr": string(csr)}
	if got := status(t, w.tokens["a"][auth.RoleViewer], "POST", "/api/v1/rbs/sessions:get", body); got != http.StatusForbidden {
		t.Errorf("viewer GetServer: %d, want 403", got)
	}
	if got := status(t, w.agentC["a"], "POST", "/api/v1/rbs/sessions:get", body); got != http.StatusForbidden {
		t.Errorf("agent credential GetServer: %d, want 403", got)
	}
	if got := status(t, w.h.Client(""), "POST", "/api/v1/rbs/sessions:get", body); got != http.StatusUnauthorized {
		t.Errorf("anonymous GetServer: %d, want 401", got)
	}
	if got := status(t, w.tokens["a"][auth.RoleDeveloper], "POST", "/api/v1/rbs/sessions:get", body); got != http.StatusServiceUnavailable {
		t.Errorf("developer GetServer with no agent offering remote Bazel: %d, want 503", got)
	}
	// The user certificate: a developer gets one naming themself, a viewer none.
	if got := status(t, w.tokens["a"][auth.RoleViewer], "POST", "/api/v1/rbs/certificate", map[string]string{"csr": string(csr)}); got != http.StatusForbidden {
		t.Errorf("viewer asks for a user certificate: %d, want 403", got)
	}
	var reg apiv1.RBSRegistered
	if _, err := w.tokens["a"][auth.RoleDeveloper].Do(ctx, "POST", "/api/v1/rbs/certificate", map[string]string{"csr": string(csr)}, &reg); err != nil ||
		reg.Identity != pki.UserIdentity(w.orgID["a"], dev["a"]).String() {
		t.Errorf("developer's user certificate: %+v %v", reg, err)
	}
	for _, p := range []string{"/api/v1/rbs/sessions/" + sess["a"] + ":heartbeat", "/api/v1/rbs/sessions/" + sess["a"] + ":release"} {
		if got := status(t, w.tokens["b"][auth.RoleAdmin], "POST", p, struct{}{}); got != http.StatusNotFound && got != http.StatusForbidden {
			t.Errorf("org b on %s: %d", p, got)
		}
	}
	// Agent routes refuse API tokens and anonymous callers; another org's
	// agent cannot report on a session.
	for _, p := range []string{"/api/v1/agent/rbs/register", "/api/v1/agent/sessions", "/api/v1/agent/sessions/" + sess["a"] + "/state"} {
		if got := status(t, w.tokens["a"][auth.RoleOwner], "POST", p, struct{}{}); got != http.StatusForbidden {
			t.Errorf("owner token on %s: %d, want 403", p, got)
		}
		if got := status(t, w.h.Client(""), "POST", p, struct{}{}); got != http.StatusUnauthorized {
			t.Errorf("anonymous on %s: %d, want 401", p, got)
		}
	}
	if got := status(t, w.agentC["b"], "POST", "/api/v1/agent/sessions/"+sess["a"]+"/state", apiv1.SessionReport{State: "stopped"}); got != http.StatusNotFound {
		t.Errorf("org b's agent reports on org a's session: %d, want 404", got)
	}
}
