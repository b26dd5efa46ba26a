package sessions_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
	"github.com/nimbus-build/nimbus/internal/sessions"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

const md5A, md5B = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type world struct {
	t      *testing.T
	st     store.Store
	b      *sessions.Broker
	ca     *pki.CA
	clock  *clock
	agent  store.Agent
	org    string
	alice  auth.Principal
	bob    auth.Principal
	viewer auth.Principal
}

func newWorld(t *testing.T, maxSessions int) *world {
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	w := &world{t: t, st: st, ca: ca, clock: c, org: "org_1",
		b: sessions.New(sessions.Options{Store: st, CA: ca, Policy: pol, IdleTTL: time.Hour, StartTimeout: 10 * time.Second,
			PollInterval: 20 * time.Millisecond, Now: c.now})}
	st.Orgs().Create(ctx, store.Org{ID: w.org, Name: "o", CreatedAt: c.now()})
	w.agent = store.Agent{ID: "agt_1", OrgID: w.org, Name: "builder", CreatedAt: c.now(), LastSeenAt: c.now()}
	st.Agents().Create(ctx, w.agent)
	w.alice = auth.Principal{Kind: auth.KindUser, Org: w.org, ID: "tok_a", Name: "alice", Role: auth.RoleDeveloper}
	w.bob = auth.Principal{Kind: auth.KindUser, Org: w.org, ID: "tok_b", Name: "bob", Role: auth.RoleDeveloper}
	w.viewer = auth.Principal{Kind: auth.KindUser, Org: w.org, ID: "tok_v", Name: "vic", Role: auth.RoleViewer}
	if maxSessions > 0 {
		_, csr, _ := pki.NewCSR()
		req, _ := pki.ParseCSR(csr)
		cert, id, err := w.b.RegisterAgent(ctx, w.agent, store.AgentRBS{Address: "10.9.0.2:7443", InstallMD5s: []string{md5A},
			Versions: []string{"4.2.3"}, MaxSessions: maxSessions}, req)
		if err != nil {
			t.Fatal(err)
		}
		if got := certIdentity(t, cert); got != id || got != pki.AgentIdentity(w.org, w.agent.ID) {
			t.Fatalf("agent certificate names %v, want %v", got, id)
		}
		w.agent, _ = st.Agents().Get(ctx, w.agent.ID)
	}
	return w
}

func certIdentity(t *testing.T, certPEM []byte) pki.Identity {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.IdentityFromCert(cert)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func request(repo, md5 string) rbs.ServerRequest {
	return rbs.ServerRequest{RepoHash: repo, Workspace: "/home/dev/" + repo, OutputBase: "/home/dev/.cache/bazel/x/" + repo,
		OutputUserRoot: "/home/dev/.cache/bazel/x", InstallMD5: md5, BazelVersion: "4.2.3"}
}

func csr(t *testing.T) *x509.CertificateRequest {
	_, b, err := pki.NewCSR()
	if err != nil {
		t.Fatal(err)
	}
	r, err := pki.ParseCSR(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type getResult struct {
	g   sessionapi.Grant
	err error
}

// get asks for a server in the background; the test plays the agent.
func (w *world) get(p auth.Principal, req rbs.ServerRequest) chan getResult {
	ch := make(chan getResult, 1)
	go func() {
		g, err := w.b.GetServer(context.Background(), p, req, csr(w.t))
		ch <- getResult{g, err}
	}()
	return ch
}

// agentOnce plays one round of the agent: it takes its orders and reports
// every started session ready and every stopped one stopped.
func (w *world) agentOnce(running []apiv1.SessionStatus) apiv1.SessionOrders {
	ctx := context.Background()
	o, err := w.b.Orders(ctx, w.agent, running, 5*time.Second)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, s := range o.Start {
		if _, err := w.b.Report(ctx, w.agent, s.ID, apiv1.SessionReport{State: "ready", Address: "10.9.0.2:7443"}); err != nil {
			w.t.Fatal(err)
		}
	}
	for _, id := range o.Stop {
		if _, err := w.b.Report(ctx, w.agent, id, apiv1.SessionReport{State: "stopped"}); err != nil {
			w.t.Fatal(err)
		}
	}
	return o
}

func TestSessionLifecycle(t *testing.T) {
	w := newWorld(t, 4)
	ctx := context.Background()
	pending := w.get(w.alice, request("repo1", md5A))
	o := w.agentOnce(nil)
	if len(o.Start) != 1 || o.Start[0].User != pki.UserIdentity(w.org, "tok_a").String() || o.Start[0].Workspace != "/home/dev/repo1" {
		t.Fatalf("orders: %+v", o)
	}
	r := <-pending
	if r.err != nil {
		t.Fatal(r.err)
	}
	g := r.g
	if g.Reused || g.AgentAddress != "10.9.0.2:7443" || g.Agent != pki.AgentIdentity(w.org, w.agent.ID) {
		t.Errorf("grant: %+v", g)
	}
	if got := certIdentity(t, g.ClientCertPEM); got != pki.UserIdentity(w.org, "tok_a") {
		t.Errorf("user certificate names %v", got)
	}
	// The same request again (a second proxy start): the warm session.
	again, err := w.b.GetServer(ctx, w.alice, request("repo1", md5A), csr(t))
	if err != nil || !again.Reused || again.SessionID != g.SessionID {
		t.Errorf("second get: %+v %v", again, err)
	}
	running := []apiv1.SessionStatus{{ID: g.SessionID, State: "ready"}}
	if o, _ := w.b.Orders(ctx, w.agent, running, 0); len(o.Start)+len(o.Stop) != 0 {
		t.Errorf("orders for a warm session: %+v", o)
	}
	// Bob gets his own session; he cannot touch Alice's.
	bobs := w.get(w.bob, request("repo1", md5A))
	w.agentOnce(running)
	rb := <-bobs
	if rb.err != nil || rb.g.SessionID == g.SessionID {
		t.Fatalf("bob: %+v %v", rb.g, rb.err)
	}
	for _, err := range []error{w.b.Heartbeat(ctx, w.bob, g.SessionID), w.b.Release(ctx, w.bob, g.SessionID)} {
		if !errors.Is(err, sessionapi.ErrNotFound) {
			t.Errorf("bob on alice's session: %v", err)
		}
	}
	if _, err := w.b.Stop(ctx, w.bob, g.SessionID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob stops alice's session: %v", err)
	}
	list, _ := w.b.List(ctx, w.bob, true)
	if len(list) != 1 || list[0].User != "tok_b" {
		t.Errorf("bob lists %+v", list)
	}
	// A viewer may not use remote Bazel.
	if _, err := w.b.GetServer(ctx, w.viewer, request("repo1", md5A), csr(t)); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("viewer: %v", err)
	}
	// Idle past the TTL (Alice heartbeats, Bob does not): Bob's is reaped.
	w.clock.add(40 * time.Minute)
	if err := w.b.Heartbeat(ctx, w.alice, g.SessionID); err != nil {
		t.Fatal(err)
	}
	w.clock.add(30 * time.Minute)
	w.st.Agents().Touch(ctx, w.agent.ID, w.clock.now())
	if err := w.b.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	o = w.agentOnce(append(running, apiv1.SessionStatus{ID: rb.g.SessionID, State: "ready"}))
	if len(o.Stop) != 1 || o.Stop[0] != rb.g.SessionID {
		t.Errorf("orders after reaping: %+v", o)
	}
	s, _ := w.st.Sessions().Get(ctx, rb.g.SessionID)
	a, _ := w.st.Sessions().Get(ctx, g.SessionID)
	if s.State != store.SessionStopped || a.State != store.SessionReady {
		t.Errorf("after reaping: bob %s, alice %s", s.State, a.State)
	}
	audit, _ := w.st.Audit().List(ctx, store.AuditFilter{OrgID: w.org, Limit: 100})
	seen := map[string]bool{}
	for _, e := range audit {
		seen[e.Action] = true
	}
	for _, want := range []string{"session.created", "session.attached", "session.reaped"} {
		if !seen[want] {
			t.Errorf("no %s in the audit log", want)
		}
	}
}

func TestNoAgent(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, 0)
	_, err := w.b.GetServer(ctx, w.alice, request("r", md5A), csr(t))
	if !errors.Is(err, rbs.ErrNoAgent) || !strings.Contains(err.Error(), "no agent of this org offers remote Bazel") {
		t.Errorf("no agents: %v", err)
	}
	w = newWorld(t, 1)
	_, err = w.b.GetServer(ctx, w.alice, request("r", md5B), csr(t))
	if !errors.Is(err, rbs.ErrNoAgent) || !strings.Contains(err.Error(), "builder runs Bazel 4.2.3") {
		t.Errorf("other release: %v", err)
	}
	first := w.get(w.alice, request("r", md5A))
	w.agentOnce(nil)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	_, err = w.b.GetServer(ctx, w.bob, request("r", md5A), csr(t))
	if !errors.Is(err, rbs.ErrNoAgent) || !strings.Contains(err.Error(), "full") {
		t.Errorf("full agent: %v", err)
	}
}

// An agent that starts nothing: the proxy is told, and the session does
// not linger.
func TestAgentNeverStarts(t *testing.T) {
	w := newWorld(t, 2)
	ctx := context.Background()
	pending := w.get(w.alice, request("r", md5A))
	o, _ := w.b.Orders(ctx, w.agent, nil, 5*time.Second)
	if len(o.Start) != 1 {
		t.Fatalf("orders: %+v", o)
	}
	if _, err := w.b.Report(ctx, w.agent, o.Start[0].ID, apiv1.SessionReport{State: "failed", Reason: "bazel server exited 1"}); err != nil {
		t.Fatal(err)
	}
	r := <-pending
	if !errors.Is(r.err, rbs.ErrNoAgent) || !strings.Contains(r.err.Error(), "bazel server exited 1") {
		t.Errorf("failed start: %v", r.err)
	}
	// Another agent cannot report on it.
	other := store.Agent{ID: "agt_2", OrgID: w.org, Name: "x", CreatedAt: time.Now()}
	w.st.Agents().Create(ctx, other)
	if _, err := w.b.Report(ctx, other, o.Start[0].ID, apiv1.SessionReport{State: "ready", Address: "1.2.3.4:5"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another agent's report: %v", err)
	}
}

// Issue 16, item 2: remote Bazel's user came from the token's free-form
// name, so an admin could mint a token named like a colleague and attach
// to the colleague's session and workspace. The user is the token's id: a
// namesake gets a session of its own and nothing of the colleague's.
// Threat model 002: Tampering ("User A modifying User B's build
// artifacts"), Information Disclosure (storage per <user_id>/<repo_hash>).
func TestNamesakeGetsNothingOfTheColleague(t *testing.T) {
	w := newWorld(t, 4)
	ctx := context.Background()
	pending := w.get(w.alice, request("repo1", md5A))
	w.agentOnce(nil)
	r := <-pending
	if r.err != nil {
		t.Fatal(r.err)
	}
	alices := r.g
	// A developer token an admin named "alice".
	fake := auth.Principal{Kind: auth.KindUser, Org: w.org, ID: "tok_fake", Name: "alice", Role: auth.RoleDeveloper}
	pending = w.get(fake, request("repo1", md5A))
	o := w.agentOnce([]apiv1.SessionStatus{{ID: alices.SessionID, State: "ready"}})
	r = <-pending
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.g.Reused || r.g.SessionID == alices.SessionID {
		t.Fatalf("the namesake attached to alice's session %s (reused %v)", alices.SessionID, r.g.Reused)
	}
	if len(o.Start) != 1 || o.Start[0].User != pki.UserIdentity(w.org, "tok_fake").String() {
		t.Errorf("the namesake's session runs as %+v, want its own token's identity", o.Start)
	}
	if got := certIdentity(t, r.g.ClientCertPEM); got == certIdentity(t, alices.ClientCertPEM) {
		t.Errorf("the namesake's tunnel certificate names alice: %v", got)
	}
	for _, err := range []error{w.b.Heartbeat(ctx, fake, alices.SessionID), w.b.Release(ctx, fake, alices.SessionID)} {
		if !errors.Is(err, sessionapi.ErrNotFound) {
			t.Errorf("the namesake on alice's session: %v", err)
		}
	}
	if _, err := w.b.Stop(ctx, fake, alices.SessionID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the namesake stops alice's session: %v", err)
	}
	list, _ := w.b.List(ctx, fake, true)
	if len(list) != 1 || list[0].ID != r.g.SessionID {
		t.Errorf("the namesake lists %+v, want only its own session", list)
	}
	cert, id, err := w.b.UserCertificate(ctx, fake, csr(t))
	if err != nil || id != pki.UserIdentity(w.org, "tok_fake") || certIdentity(t, cert) != id {
		t.Errorf("the namesake's user certificate: %v %v", id, err)
	}
}
