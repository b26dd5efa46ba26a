package session

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
)

// memAgent is a small working Agent: it keeps sessions in memory, up to a
// capacity, without running Bazel.
type memAgent struct {
	name     string
	md5      string
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

func (a *memAgent) InstallMD5() string { return a.md5 }

type fixture struct {
	ca     *pki.CA
	agent  *memAgent
	broker *LocalBroker
	url    string
	caFile string
	dir    string
	now    time.Time
	mu     sync.Mutex
}

func (f *fixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, dir: t.TempDir(), now: time.Unix(1_800_000_000, 0)}
	f.agent = &memAgent{name: "agent-1", md5: "md5-a", capacity: 2, running: map[string]server.SessionSpec{}}
	f.broker = NewLocalBroker(LocalBrokerOptions{CA: ca, Agents: []Agent{f.agent}, IdleTTL: time.Hour, Now: f.clock})
	tokens := map[string]auth.Principal{
		"alice": {Kind: auth.KindUser, Org: "acme", Name: "alice", Role: auth.RoleDeveloper},
		"bob":   {Kind: auth.KindUser, Org: "acme", Name: "bob", Role: auth.RoleAdmin},
		"eve":   {Kind: auth.KindUser, Org: "acme", Name: "eve", Role: auth.RoleViewer},
		"agent": {Kind: auth.KindAgent, Org: "acme", Name: "agent-1"},
	}
	srv := httptest.NewUnstartedServer(TokenAuth(tokens, Handler(f.broker, slog.New(slog.DiscardHandler))))
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

func (f *fixture) client(t *testing.T, token string) *Client {
	t.Helper()
	creds := filepath.Join(f.dir, token+".json")
	os.WriteFile(creds, []byte(`{"token":"`+token+`","server":"ignored"}`), 0o600)
	c, err := NewClient(rbs.ProxyConfig{Server: f.url, Credentials: creds, CAFile: f.caFile})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(ws string, opts ...string) rbs.ServerRequest {
	return rbs.ServerRequest{
		RepoHash: rbs.RepoHash("laptop", ws), Workspace: ws, OutputBase: "/home/u/out/x", OutputUserRoot: "/home/u/out",
		InstallMD5: "md5-a", StartupOptions: opts,
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
	if id, err := pki.IdentityFromCert(leaf); err != nil || id != pki.UserIdentity("acme", "alice") {
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
	if len(f.agent.stopped) != 1 || f.agent.stopped[0] != ep.SessionID {
		t.Errorf("stopped %v, want [%s]", f.agent.stopped, ep.SessionID)
	}
	// Another user never gets Alice's session.
	bob := f.client(t, "bob")
	bep, err := bob.GetServer(ctx, request("/home/u/ws", "--nowatchfs"))
	if err != nil || bep.SessionID == other.SessionID {
		t.Errorf("bob's session: %+v, %v", bep, err)
	}
	if err := bob.Heartbeat(ctx, other.SessionID); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob's heartbeat on alice's session: %v, want ErrNotFound", err)
	}
	if err := bob.Release(ctx, other.SessionID); !errors.Is(err, ErrNotFound) {
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
	req.InstallMD5 = "md5-other"
	_, err := f.client(t, "alice").GetServer(ctx, req)
	if !errors.Is(err, rbs.ErrNoAgent) || !strings.Contains(err.Error(), "md5-other") {
		t.Errorf("unknown Bazel version: %v, want ErrNoAgent naming md5-other", err)
	}
	f.client(t, "alice").GetServer(ctx, request("/w1"))
	f.client(t, "alice").GetServer(ctx, request("/w2"))
	if _, err := f.client(t, "alice").GetServer(ctx, request("/w3")); !errors.Is(err, rbs.ErrNoAgent) || !strings.Contains(err.Error(), "capacity") {
		t.Errorf("full agent: %v, want ErrNoAgent about capacity", err)
	}
}

func TestReap(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := f.client(t, "alice")
	a, _ := alice.GetServer(ctx, request("/w1"))
	b, _ := alice.GetServer(ctx, request("/w2"))
	f.advance(50 * time.Minute)
	alice.Heartbeat(ctx, b.SessionID)
	f.advance(20 * time.Minute)
	if n := f.broker.Reap(ctx); n != 1 {
		t.Fatalf("reaped %d, want 1", n)
	}
	if len(f.agent.stopped) != 1 || f.agent.stopped[0] != a.SessionID {
		t.Errorf("stopped %v, want the idle %s", f.agent.stopped, a.SessionID)
	}
	if got := f.broker.Sessions(); len(got) != 1 || got[0].ID != b.SessionID {
		t.Errorf("sessions after reaping: %+v", got)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	f := newFixture(t)
	_, csr, _ := pki.NewCSR()
	good := getServerRequest{ServerRequest: request("/w"), CSR: string(csr)}
	for name, mutate := range map[string]func(*getServerRequest){
		"bad hash":    func(r *getServerRequest) { r.RepoHash = "../../x" },
		"relative ws": func(r *getServerRequest) { r.Workspace = "ws" },
		"no csr":      func(r *getServerRequest) { r.CSR = "" },
		"jvm flag":    func(r *getServerRequest) { r.StartupOptions = []string{"-Xmx1g"} },
		"no md5":      func(r *getServerRequest) { r.InstallMD5 = "" },
		"bad csr": func(r *getServerRequest) {
			r.CSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
		},
	} {
		req := good
		mutate(&req)
		body, _ := json.Marshal(req)
		code := post(t, f, PathGetServer, string(body))
		if code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", name, code)
		}
	}
	if code := post(t, f, PathGetServer, `{"repo_hash":1}`); code != http.StatusBadRequest {
		t.Errorf("wrong type: %d", code)
	}
	if code := post(t, f, pathSessions+"x:explode", ""); code != http.StatusNotFound {
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
	b, _ := json.Marshal(getServerRequest{ServerRequest: request("/w"), CSR: string(csr)})
	f.Add(string(b))
	f.Add(`{"repo_hash":"` + strings.Repeat("a", 64) + `","workspace":"/w","output_base":"/o/x","output_user_root":"/o","install_md5":"x","csr":"x"}`)
	ca, _ := pki.NewCA("fuzz")
	agent := &memAgent{name: "a", md5: "md5-a", capacity: 1 << 30, running: map[string]server.SessionSpec{}}
	h := Handler(NewLocalBroker(LocalBrokerOptions{CA: ca, Agents: []Agent{agent}}), slog.New(slog.DiscardHandler))
	p := auth.Principal{Kind: auth.KindUser, Org: "acme", Name: "alice", Role: auth.RoleDeveloper}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, PathGetServer, strings.NewReader(body))
		req = req.WithContext(auth.WithPrincipal(req.Context(), p))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && !(rec.Code == http.StatusServiceUnavailable && strings.Contains(rec.Body.String(), "no agent can serve")) {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}

// FuzzEndpointFrom: the proxy checks the control plane's answer.
func FuzzEndpointFrom(f *testing.F) {
	ca, _ := pki.NewCA("fuzz")
	key, csrPEM, _ := pki.NewCSR()
	csr, _ := pki.ParseCSR(csrPEM)
	cert, _ := ca.SignCSR(csr, pki.UserIdentity("acme", "alice"), pki.IssueOptions{})
	good, _ := json.Marshal(getServerResponse{SessionID: "s-1", AgentAddress: "10.0.0.1:1", AgentIdentity: "spiffe://nimbus/org/acme/agent/a", CACertPEM: string(ca.CertPEM()), ClientCertPEM: string(cert)})
	f.Add(string(good))
	f.Fuzz(func(t *testing.T, body string) {
		var resp getServerResponse
		if json.Unmarshal([]byte(body), &resp) != nil {
			return
		}
		ep, err := endpointFrom(resp, key)
		if err != nil {
			return
		}
		if ep.TLS == nil || ep.TLS.MinVersion != tls.VersionTLS13 || pki.ValidateName(ep.SessionID) != nil {
			t.Fatalf("accepted %+v", ep)
		}
	})
}

func FuzzReadToken(f *testing.F) {
	f.Add(`{"token":"abc"}`)
	f.Add("abc\n")
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(t.TempDir(), "creds")
		os.WriteFile(p, []byte(content), 0o600)
		tok, err := ReadToken(p)
		if err == nil && (tok == "" || strings.ContainsAny(tok, " \r\n\t")) {
			t.Fatalf("token %q", tok)
		}
	})
}
