package sessionapi_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
	"github.com/nimbus-build/nimbus/internal/sessions/sessionstest"
	"github.com/nimbus-build/nimbus/internal/store"
)

// memAgent is a small working Agent: it keeps sessions in memory, up to a
// capacity, without running Bazel.
type memAgent struct {
	name     string
	capacity int
	mu       sync.Mutex
	running  map[string]server.SessionSpec
	stopped  []string
}

func (a *memAgent) StartSession(_ context.Context, spec server.SessionSpec) (server.Endpoint, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.running[spec.ID]; !ok && len(a.running) >= a.capacity {
		return server.Endpoint{}, server.ErrNoCapacity
	}
	a.running[spec.ID] = spec
	return server.Endpoint{SessionID: spec.ID, Address: "10.0.0.9:7443", Agent: pki.AgentIdentity("acme", a.name)}, nil
}

func (a *memAgent) StopSession(_ context.Context, id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.running[id]; !ok {
		return fmt.Errorf("no session %s", id)
	}
	delete(a.running, id)
	a.stopped = append(a.stopped, id)
	return nil
}

// md5A is the Bazel release the test agent runs.
const md5A = "0123456789abcdef0123456789abcdef"

// fixture is the sessions API over TLS in front of the real broker (over
// SQLite), with one agent that runs up to two sessions in memory.
type fixture struct {
	ca      *pki.CA
	agent   *memAgent
	cluster *sessionstest.Cluster
	url     string
	caFile  string
	dir     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, dir: t.TempDir()}
	f.cluster = sessionstest.Start(t, ca, "acme", sessionstest.Options{IdleTTL: time.Hour})
	f.agent = &memAgent{name: "agent-1", capacity: 2, running: map[string]server.SessionSpec{}}
	f.cluster.AddAgent(t, "agent-1", store.AgentRBS{Address: "10.0.0.9:7443", InstallMD5s: []string{md5A}, Versions: []string{"4.2.3"},
		MaxSessions: 2}, f.agent)
	tokens := map[string]auth.Principal{
		"alice": {Kind: auth.KindUser, Org: "acme", ID: "tok_alice", Name: "alice", Role: auth.RoleDeveloper},
		"bob":   {Kind: auth.KindUser, Org: "acme", ID: "tok_bob", Name: "bob", Role: auth.RoleAdmin},
		"eve":   {Kind: auth.KindUser, Org: "acme", ID: "tok_eve", Name: "eve", Role: auth.RoleViewer},
		"agent": {Kind: auth.KindAgent, Org: "acme", ID: "agent-1", Name: "agent-1"},
	}
	srv := httptest.NewUnstartedServer(sessionstest.Auth(tokens, sessionapi.Handler(f.cluster.Broker, slog.New(slog.DiscardHandler))))
	cert, err := ca.Issue(pki.Identity{Org: "acme", Kind: pki.KindServer, Name: "cp"}, pki.IssueOptions{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.caFile = filepath.Join(f.dir, "ca.crt")
	os.WriteFile(f.caFile, ca.CertPEM(), 0o644)
	return f
}

// stopped waits until the agent has stopped the sessions, in order.
func (f *fixture) stopped(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.agent.mu.Lock()
		got := strings.Join(f.agent.stopped, ",")
		f.agent.mu.Unlock()
		if got == strings.Join(want, ",") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stopped %s, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) client(t *testing.T, token string) *sessionapi.Client {
	t.Helper()
	creds := filepath.Join(f.dir, token+".json")
	os.WriteFile(creds, []byte(`{"token":"`+token+`","server":"ignored"}`), 0o600)
	c, err := sessionapi.NewClient(rbs.ProxyConfig{Server: f.url, Credentials: creds, CAFile: f.caFile})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(ws string, opts ...string) rbs.ServerRequest {
	return rbs.ServerRequest{
		RepoHash: rbs.RepoHash("laptop", ws), Workspace: ws, OutputBase: "/home/u/out/x", OutputUserRoot: "/home/u/out",
		InstallMD5: md5A, StartupOptions: opts,
	}
}

func TestGetServerReuseAndReplace(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := f.client(t, "alice")
	ep, err := alice.GetServer(ctx, request("/home/u/ws"))
	if err != nil {
		t.Fatal(err)
	}
	if ep.Reused || ep.Address != "10.0.0.9:7443" || ep.Agent != "agent-1" || ep.HeartbeatInterval != 30*time.Second {
		t.Errorf("first endpoint: %+v", ep)
	}
	// The tunnel certificate carries the user's identity, from the token.
	leaf := ep.TLS.Certificates[0].Leaf
	if id, err := pki.IdentityFromCert(leaf); err != nil || id != pki.UserIdentity("acme", "tok_alice") {
		t.Errorf("tunnel certificate identity %v, %v", id, err)
	}
	again, err := alice.GetServer(ctx, request("/home/u/ws"))
	if err != nil || !again.Reused || again.SessionID != ep.SessionID {
		t.Errorf("second GetServer: %+v, %v; want the same session reused", again, err)
	}
	// New startup options: the old server of this repository is replaced.
	other, err := alice.GetServer(ctx, request("/home/u/ws", "--nowatchfs"))
	if err != nil || other.Reused || other.SessionID == ep.SessionID {
		t.Fatalf("GetServer with other options: %+v, %v", other, err)
	}
	f.stopped(t, ep.SessionID)
	// Another user never gets Alice's session.
	bob := f.client(t, "bob")
	bep, err := bob.GetServer(ctx, request("/home/u/ws", "--nowatchfs"))
	if err != nil || bep.SessionID == other.SessionID {
		t.Errorf("bob's session: %+v, %v", bep, err)
	}
	if err := bob.Heartbeat(ctx, other.SessionID); !errors.Is(err, sessionapi.ErrNotFound) {
		t.Errorf("bob's heartbeat on alice's session: %v, want ErrNotFound", err)
	}
	if err := bob.Release(ctx, other.SessionID); !errors.Is(err, sessionapi.ErrNotFound) {
		t.Errorf("bob's release of alice's session: %v, want ErrNotFound", err)
	}
	if err := alice.Heartbeat(ctx, other.SessionID); err != nil {
		t.Errorf("alice's heartbeat: %v", err)
	}
}

func TestGetServerRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.client(t, "eve").GetServer(ctx, request("/w")); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("viewer: %v, want forbidden", err)
	}
	if _, err := f.client(t, "agent").GetServer(ctx, request("/w")); !errors.Is(err, auth.ErrForbidden) {
		t.Errorf("agent credential: %v, want forbidden", err)
	}
	if _, err := f.client(t, "nobody").GetServer(ctx, request("/w")); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("unknown token: %v, want unauthenticated", err)
	}
	req := request("/w")
	req.InstallMD5 = "fedcba9876543210fedcba9876543210"
	_, err := f.client(t, "alice").GetServer(ctx, req)
	if !errors.Is(err, rbs.ErrNoAgent) || !strings.Contains(err.Error(), req.InstallMD5) {
		t.Errorf("unknown Bazel version: %v, want ErrNoAgent naming %s", err, req.InstallMD5)
	}
	f.client(t, "alice").GetServer(ctx, request("/w1"))
	f.client(t, "alice").GetServer(ctx, request("/w2"))
	if _, err := f.client(t, "alice").GetServer(ctx, request("/w3")); !errors.Is(err, rbs.ErrNoAgent) || !strings.Contains(err.Error(), "full") {
		t.Errorf("full agent: %v, want ErrNoAgent saying it is full", err)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	f := newFixture(t)
	_, csr, _ := pki.NewCSR()
	good := sessionapi.GetServerRequest{ServerRequest: request("/w"), CSR: string(csr)}
	for name, mutate := range map[string]func(*sessionapi.GetServerRequest){
		"bad hash":    func(r *sessionapi.GetServerRequest) { r.RepoHash = "../../x" },
		"relative ws": func(r *sessionapi.GetServerRequest) { r.Workspace = "ws" },
		"no csr":      func(r *sessionapi.GetServerRequest) { r.CSR = "" },
		"jvm flag":    func(r *sessionapi.GetServerRequest) { r.StartupOptions = []string{"-Xmx1g"} },
		"no md5":      func(r *sessionapi.GetServerRequest) { r.InstallMD5 = "" },
		"bad csr": func(r *sessionapi.GetServerRequest) {
			r.CSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
		},
	} {
		req := good
		mutate(&req)
		body, _ := json.Marshal(req)
		code := post(t, f, sessionapi.PathGetServer, string(body))
		if code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, code)
		}
	}
	if code := post(t, f, sessionapi.PathGetServer, `{"repo_hash":1}`); code != http.StatusBadRequest {
		t.Errorf("wrong type: %d", code)
	}
	if code := post(t, f, sessionapi.PathSessions+"x:explode", ""); code != http.StatusNotFound {
		t.Errorf("unknown action: %d", code)
	}
}

func post(t testing.TB, f *fixture, path, body string) int {
	t.Helper()
	pool, _ := pki.PoolFromPEM(f.ca.CertPEM())
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodPost, f.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// FuzzGetServerBody: whatever a proxy sends, the API answers 2xx, 4xx or
// 503 (no agent can serve what it asks for) — never another 5xx, never a
// crash.
func FuzzGetServerBody(f *testing.F) {
	_, csr, _ := pki.NewCSR()
	b, _ := json.Marshal(sessionapi.GetServerRequest{ServerRequest: request("/w"), CSR: string(csr)})
	f.Add(string(b))
	f.Add(`{"repo_hash":"` + strings.Repeat("a", 64) + `","workspace":"/w","output_base":"/o/x","output_user_root":"/o","install_md5":"x","csr":"x"}`)
	ca, _ := pki.NewCA("fuzz")
	c := sessionstest.Start(f, ca, "acme", sessionstest.Options{})
	agent := &memAgent{name: "a", capacity: 1 << 30, running: map[string]server.SessionSpec{}}
	c.AddAgent(f, "a", store.AgentRBS{Address: "10.0.0.9:7443", InstallMD5s: []string{md5A}, MaxSessions: 1 << 30}, agent)
	h := sessionapi.Handler(c.Broker, slog.New(slog.DiscardHandler))
	p := auth.Principal{Kind: auth.KindUser, Org: "acme", ID: "tok_alice", Name: "alice", Role: auth.RoleDeveloper}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, sessionapi.PathGetServer, strings.NewReader(body))
		req = req.WithContext(auth.WithPrincipal(req.Context(), p))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && !(rec.Code == http.StatusServiceUnavailable && strings.Contains(rec.Body.String(), "no agent can serve")) {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}
