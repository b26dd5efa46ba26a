package apiclient_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/pki"
)

// Every typed method against a real server: a job's whole life through
// the agent API, and the administration calls.
func TestTypedClient(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	ctx := context.Background()
	owner := h.Owner()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	who, err := owner.Whoami(ctx)
	must(err)
	if who.Role != "owner" || who.Org != h.OrgID {
		t.Errorf("whoami: %+v", who)
	}
	jt, err := owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"linux"}})
	must(err)
	en, err := h.Client(jt.Token).Enroll(ctx, apiv1.Enroll{Name: "a1", MaxJobs: 2})
	must(err)
	agent := h.Client(en.Credential)
	_, err = agent.Register(ctx, apiv1.Register{Labels: []string{"linux"}, MaxJobs: 2})
	must(err)
	_, err = agent.Refresh(ctx)
	must(err)
	if l, err := agent.Lease(ctx, 0); err != nil || l != nil {
		t.Fatalf("lease with an empty queue: %+v, %v", l, err)
	}
	j, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"echo", "hi"}, Labels: []string{"linux"}})
	must(err)
	l, err := agent.Lease(ctx, 5)
	if err != nil || l == nil || l.Job.ID != j.ID {
		t.Fatalf("lease: %+v, %v", l, err)
	}
	_, err = agent.StartJob(ctx, j.ID, l.Fence)
	must(err)
	synced, err := agent.Sync(ctx, apiv1.Sync{Leases: []apiv1.LeaseRef{{JobID: j.ID, Fence: l.Fence}}})
	must(err)
	if len(synced.Leases) != 1 || synced.Leases[0].Status != apiv1.LeaseOK {
		t.Errorf("sync: %+v", synced)
	}
	ack, err := agent.AppendLogs(ctx, j.ID, apiv1.Logs{Fence: l.Fence, Chunks: []apiv1.LogChunk{{Seq: 0, Data: []byte("hello ")}, {Seq: 1, Data: []byte("world")}}})
	if err != nil || ack.Seq != 1 {
		t.Fatalf("logs: %+v, %v", ack, err)
	}
	zero := 0
	_, err = agent.CompleteJob(ctx, j.ID, apiv1.Complete{Fence: l.Fence, State: "succeeded", ExitCode: &zero})
	must(err)
	var out strings.Builder
	must(owner.FollowJobLogs(ctx, j.ID, true, func(c apiv1.LogChunk) error { out.Write(c.Data); return nil }))
	if out.String() != "hello world" {
		t.Errorf("logs: %q", out.String())
	}
	got, err := owner.GetJob(ctx, j.ID)
	if err != nil || got.State != "succeeded" {
		t.Errorf("job: %+v, %v", got, err)
	}
	list, err := owner.ListJobs(ctx, apiclient.JobQuery{State: "succeeded", Limit: 10})
	if err != nil || len(list.Jobs) != 1 {
		t.Errorf("list jobs: %+v, %v", list, err)
	}
	queued, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}, Labels: []string{"gpu"}})
	must(err)
	if c, err := owner.CancelJob(ctx, queued.ID); err != nil || c.State != "cancelled" {
		t.Errorf("cancel: %+v, %v", c, err)
	}

	agents, err := owner.ListAgents(ctx)
	if err != nil || len(agents) != 1 {
		t.Fatalf("agents: %+v, %v", agents, err)
	}
	tok, err := owner.CreateToken(ctx, apiv1.CreateToken{Name: "dev", Role: "developer"})
	if err != nil || tok.Secret == "" {
		t.Fatalf("create token: %+v, %v", tok, err)
	}
	toks, err := owner.ListTokens(ctx)
	if err != nil || len(toks) != 2 {
		t.Errorf("tokens: %d, %v", len(toks), err)
	}
	if r, err := owner.RevokeToken(ctx, tok.ID); err != nil || r.RevokedAt.IsZero() {
		t.Errorf("revoke: %+v, %v", r, err)
	}
	if _, err := h.Client(tok.Secret).Whoami(ctx); !apiclient.IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("revoked token: %v, want 401", err)
	}
	org, err := owner.CreateOrg(ctx, apiv1.CreateOrg{Name: "b"})
	must(err)
	if o, err := owner.LinkOrg(ctx, org.Org.ID, "b-gh", 99); err != nil || o.GitHubID != 99 {
		t.Errorf("link: %+v, %v", o, err)
	}
	if orgs, err := owner.ListOrgs(ctx); err != nil || len(orgs) != 2 {
		t.Errorf("orgs: %+v, %v", orgs, err)
	}
	ct, err := owner.SetCacheTrust(ctx, apiv1.CacheTrust{UntrustedRefs: []string{"refs/heads/exp/*"}, ACWriteRefs: []string{"refs/heads/main"}})
	must(err)
	if got, err := owner.CacheTrust(ctx); err != nil || strings.Join(got.ACWriteRefs, ",") != "refs/heads/main" || got.UpdatedBy != ct.UpdatedBy {
		t.Errorf("cache trust: %+v, %v", got, err)
	}
	keys, err := owner.RotateKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Errorf("rotate keys: %d, %v", len(keys), err)
	}
	if keys, err := owner.ListKeys(ctx); err != nil || len(keys) != 2 {
		t.Errorf("keys: %d, %v", len(keys), err)
	}
	if ws, err := owner.RotateWebhookSecret(ctx); err != nil || ws.Secret == "" || ws.Count != 2 {
		t.Errorf("rotate webhook secret: %+v, %v", ws, err)
	}
	if ws, err := owner.RetireWebhookSecrets(ctx); err != nil || ws.Count != 1 {
		t.Errorf("retire webhook secrets: %+v, %v", ws, err)
	}
	audit, err := owner.ListAudit(ctx, apiclient.AuditQuery{Limit: 5})
	if err != nil || len(audit.Entries) != 5 || audit.Next == "" {
		t.Errorf("audit: %d entries, next %q, %v", len(audit.Entries), audit.Next, err)
	}
	_, agentCSR, _ := pki.NewCSR()
	if reg, err := agent.RegisterRBS(ctx, apiv1.RBSRegister{CSR: string(agentCSR), Address: "127.0.0.1:7443",
		InstallMD5s: []string{"0123456789abcdef0123456789abcdef"}, MaxSessions: 1}); err != nil || reg.CertPEM == "" {
		t.Errorf("register rbs: %v", err)
	}
	if o, err := agent.SessionOrders(ctx, apiv1.SessionsSync{}); err != nil || len(o.Start)+len(o.Stop) != 0 {
		t.Errorf("session orders: %+v, %v", o, err)
	}
	if _, err := agent.ReportSession(ctx, "ses_nosuch", apiv1.SessionReport{State: "stopped"}); !apiclient.IsStatus(err, http.StatusNotFound) {
		t.Errorf("report on a session that does not exist: %v, want 404", err)
	}
	if a, err := owner.DisableAgent(ctx, en.AgentID); err != nil || !a.Disabled {
		t.Errorf("disable: %+v, %v", a, err)
	}
	if s, err := owner.ListSessions(ctx, true); err != nil || len(s) != 0 {
		t.Errorf("sessions: %+v, %v", s, err)
	}
	if _, err := owner.StopSession(ctx, "ses_nosuch"); !apiclient.IsStatus(err, http.StatusNotFound) {
		t.Errorf("stop a session that does not exist: %v, want 404", err)
	}
	_, csr, _ := pki.NewCSR()
	if reg, err := owner.RBSCertificate(ctx, string(csr)); err != nil || reg.CertPEM == "" {
		t.Errorf("rbs certificate: %v", err)
	}
}
