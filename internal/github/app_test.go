package github_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

// fakeClock is a clock shared by the client and the emulator.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sleepRecorder stands in for the client's sleep: it records the waits and
// returns at once.
type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleepRecorder) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays = append(s.delays, d)
	return ctx.Err()
}

func (s *sleepRecorder) Delays() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

const testAppID = 4242

type fixture struct {
	srv    *githubtest.Server
	app    *github.App
	clock  *fakeClock
	sleeps *sleepRecorder
	key    *rsa.PrivateKey
	logs   *bytes.Buffer
}

// newFixture starts an emulator with one App and installations 1 (org
// octo-org), 2 (user alice, all repositories) and 3 (org acme, only
// acme/api), and a client for the App.
func newFixture(t *testing.T, srvCfg githubtest.Config, mod func(*github.AppConfig)) *fixture {
	t.Helper()
	f := &fixture{clock: newFakeClock(), sleeps: &sleepRecorder{}, key: githubtest.SharedKey(t), logs: &bytes.Buffer{}}
	if srvCfg.Now == nil {
		srvCfg.Now = f.clock.Now
	}
	f.srv = githubtest.NewServer(t, srvCfg)
	f.srv.AddApp(githubtest.App{ID: testAppID, ClientID: "Iv23liTestClient", PublicKey: &f.key.PublicKey})
	f.srv.AddInstallation(githubtest.Installation{ID: 1, AppID: testAppID, Account: "octo-org", AccountType: "Organization"})
	f.srv.AddInstallation(githubtest.Installation{ID: 2, AppID: testAppID, Account: "alice", AccountType: "User"})
	f.srv.AddInstallation(githubtest.Installation{ID: 3, AppID: testAppID, Account: "acme", AccountType: "Organization",
		Repositories: []string{"acme/api"}})
	cfg := github.AppConfig{
		AppID:         testAppID,
		PrivateKeyPEM: githubtest.PKCS1PEM(f.key),
		BaseURL:       f.srv.URL,
		HTTPClient:    f.srv.Client(),
		Now:           f.clock.Now,
		Sleep:         f.sleeps.Sleep,
		Logger:        slog.New(slog.NewTextHandler(&syncWriter{w: f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	app, err := github.NewApp(cfg)
	if err != nil {
		t.Fatalf("NewApp: %v", err)
	}
	f.app = app
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// count returns how many requests the emulator answered with method and a
// path ending in suffix.
func count(srv *githubtest.Server, method, suffix string) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Method == method && strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}

func TestInstallationTokenIssuers(t *testing.T) {
	key := githubtest.SharedKey(t)
	for _, tc := range []struct {
		name string
		mod  func(*github.AppConfig)
	}{
		{"app id, PKCS#1 key", func(*github.AppConfig) {}},
		{"client id", func(c *github.AppConfig) { c.AppID, c.ClientID = 0, "Iv23liTestClient" }},
		{"PKCS#8 key", func(c *github.AppConfig) { c.PrivateKeyPEM = githubtest.PKCS8PEM(t, key) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, githubtest.Config{}, tc.mod)
			tok, err := f.app.InstallationToken(testContext(t), 1)
			if err != nil {
				t.Fatalf("InstallationToken: %v", err)
			}
			if !strings.HasPrefix(tok, "ghs_") {
				t.Errorf("token %q does not look like an installation token", tok)
			}
			if n := f.srv.TokensIssued(1); n != 1 {
				t.Errorf("tokens issued = %d, want 1", n)
			}
			if strings.Contains(f.logs.String(), tok) {
				t.Errorf("the token appears in the logs")
			}
		})
	}
}

func TestInstallationTokenWrongKeyRefused(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, func(c *github.AppConfig) {
		c.PrivateKeyPEM = githubtest.PKCS1PEM(githubtest.GenerateKey(t))
	})
	_, err := f.app.InstallationToken(testContext(t), 1)
	var ae *github.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Fatalf("InstallationToken with the wrong key: err = %v, want an APIError 401", err)
	}
	if !strings.Contains(ae.Message, "could not be decoded") || github.Retryable(err) {
		t.Errorf("APIError = %+v (retryable %v); want GitHub's message and not retryable", ae, github.Retryable(err))
	}
	if n := count(f.srv, "POST", "/access_tokens"); n != 1 {
		t.Errorf("token requests = %d, want 1 (a 401 is not retried)", n)
	}
}

func TestInstallationTokenUnknownInstallation(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	_, err := f.app.InstallationToken(testContext(t), 999)
	if !errors.Is(err, github.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if _, err := f.app.InstallationToken(testContext(t), 0); err == nil || strings.Contains(err.Error(), "github api") {
		t.Fatalf("installation 0: err = %v, want a local validation error", err)
	}
}

func TestInstallationTokenCachedThenRefreshed(t *testing.T) {
	f := newFixture(t, githubtest.Config{TokenLifetime: time.Hour}, nil)
	ctx := testContext(t)
	first, err := f.app.InstallationToken(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(54 * time.Minute) // 6 minutes left: still cached
	again, err := f.app.InstallationToken(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || f.srv.TokensIssued(1) != 1 {
		t.Fatalf("after 54m: same token %v, issued %d; want the cached token", again == first, f.srv.TokensIssued(1))
	}
	f.clock.Advance(time.Minute) // 5 minutes left: refreshed
	fresh, err := f.app.InstallationToken(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if fresh == first || f.srv.TokensIssued(1) != 2 {
		t.Fatalf("after 55m: new token %v, issued %d; want a fresh token", fresh != first, f.srv.TokensIssued(1))
	}
	// The fresh token is cached in its turn.
	if tok, err := f.app.InstallationToken(ctx, 1); err != nil || tok != fresh || f.srv.TokensIssued(1) != 2 {
		t.Fatalf("refreshed token not cached: err %v, issued %d", err, f.srv.TokensIssued(1))
	}
}

func TestInstallationTokenShortLivedNotCached(t *testing.T) {
	// A token with less than the refresh margin left is used, not kept.
	f := newFixture(t, githubtest.Config{TokenLifetime: 4 * time.Minute}, nil)
	for i := range 3 {
		if _, err := f.app.InstallationToken(testContext(t), 1); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := f.srv.TokensIssued(1); n != 3 {
		t.Fatalf("tokens issued = %d, want 3", n)
	}
}

func TestInstallationTokenConcurrentCallersShareOneRequest(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	release := f.srv.PauseTokens()
	const callers = 32
	var started, done sync.WaitGroup
	tokens := make([]string, callers)
	errs := make([]error, callers)
	started.Add(callers)
	done.Add(callers)
	for i := range callers {
		go func() {
			defer done.Done()
			started.Done()
			tokens[i], errs[i] = f.app.InstallationToken(ctx, 1)
		}()
	}
	started.Wait()
	waitFor(t, "the first token request to reach the emulator", func() bool { return f.srv.PendingTokenRequests() >= 1 })
	release()
	done.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("caller %d got a different token", i)
		}
	}
	if n := count(f.srv, "POST", "/access_tokens"); n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}
}

// A caller that gives up does not fail the others sharing its request.
func TestInstallationTokenCallerCancelled(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	release := f.srv.PauseTokens()
	ctx, cancel := context.WithCancel(testContext(t))
	errc := make(chan error, 1)
	go func() {
		_, err := f.app.InstallationToken(ctx, 1)
		errc <- err
	}()
	waitFor(t, "the token request to reach the emulator", func() bool { return f.srv.PendingTokenRequests() == 1 })
	other := make(chan error, 1)
	otherCtx := testContext(t)
	go func() {
		_, err := f.app.InstallationToken(otherCtx, 1)
		other <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err = %v, want context.Canceled", err)
	}
	release()
	if err := <-other; err != nil {
		t.Fatalf("other caller: %v", err)
	}
	if n := f.srv.TokensIssued(1); n != 1 {
		t.Fatalf("tokens issued = %d, want 1", n)
	}
}

func TestManyInstallations(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	const n = 40
	for i := range n {
		id := int64(100 + i)
		f.srv.AddInstallation(githubtest.Installation{ID: id, AppID: testAppID, Account: fmt.Sprintf("org-%d", i), AccountType: "Organization"})
	}
	ctx := testContext(t)
	seen := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n*3)
	for round := range 3 {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := int64(100 + i)
				tok, err := f.app.InstallationToken(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				cfg, err := f.app.GenerateJITConfig(ctx, id, github.RunnerTarget{Org: fmt.Sprintf("org-%d", i)},
					github.JITRequest{Name: fmt.Sprintf("nimbus-%d-%d", i, round), Labels: []string{"nimbus"}})
				if err != nil {
					errs <- err
					return
				}
				if cfg.RunnerID <= 0 {
					errs <- fmt.Errorf("installation %d: runner id %d", id, cfg.RunnerID)
				}
				mu.Lock()
				seen[tok] = true
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("distinct tokens = %d, want %d (one per installation)", len(seen), n)
	}
	for i := range n {
		if got := f.srv.TokensIssued(int64(100 + i)); got != 1 {
			t.Errorf("installation %d: tokens issued = %d, want 1", 100+i, got)
		}
	}
	if got := len(f.srv.Runners()); got != 3*n {
		t.Errorf("runners = %d, want %d", got, 3*n)
	}
}

func TestGenerateJITConfigForOrgAndUserRepos(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	for _, tc := range []struct {
		name         string
		opts         githubtest.WorkflowJobOptions
		wantTarget   github.RunnerTarget
		wantURL      string
		wantRecorded githubtest.Runner
	}{
		{
			name:       "org-owned repository gets an org runner",
			opts:       githubtest.WorkflowJobOptions{Owner: "octo-org", OwnerType: "Organization", InstallationID: 1, Labels: []string{"self-hosted", "nimbus-large"}},
			wantTarget: github.RunnerTarget{Org: "octo-org"},
			wantURL:    "https://github.com/octo-org",
			wantRecorded: githubtest.Runner{Name: "nimbus-job-1", Labels: []string{"self-hosted", "nimbus-large"},
				RunnerGroupID: 1, WorkFolder: "_work", Org: "octo-org", InstallationID: 1},
		},
		{
			name:       "user-owned repository gets a repository runner",
			opts:       githubtest.WorkflowJobOptions{Owner: "alice", OwnerID: 77, OwnerType: "User", RepoName: "dotfiles", InstallationID: 2, Labels: []string{"self-hosted"}},
			wantTarget: github.RunnerTarget{Repo: "alice/dotfiles"},
			wantURL:    "https://github.com/alice/dotfiles",
			wantRecorded: githubtest.Runner{Name: "nimbus-job-1", Labels: []string{"self-hosted"},
				RunnerGroupID: 1, WorkFolder: "_work", Repo: "alice/dotfiles", InstallationID: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := github.ParseWorkflowJob(githubtest.WorkflowJobPayload(tc.opts))
			if err != nil {
				t.Fatal(err)
			}
			target := github.TargetFor(ev)
			if diff := cmp.Diff(tc.wantTarget, target); diff != "" {
				t.Fatalf("TargetFor (-want +got):\n%s", diff)
			}
			cfg, err := f.app.GenerateJITConfig(ctx, ev.InstallationID, target,
				github.JITRequest{Name: "nimbus-job-1", Labels: ev.Job.Labels})
			if err != nil {
				t.Fatalf("GenerateJITConfig: %v", err)
			}
			doc, err := githubtest.DecodeJITConfig(cfg.EncodedJITConfig)
			if err != nil {
				t.Fatal(err)
			}
			if doc.RunnerID != cfg.RunnerID || doc.RunnerName != "nimbus-job-1" || cfg.RunnerName != "nimbus-job-1" ||
				doc.URL != tc.wantURL || !cmp.Equal(doc.Labels, ev.Job.Labels) {
				t.Errorf("jit config %+v decodes to %+v", cfg, doc)
			}
			var got githubtest.Runner
			for _, r := range f.srv.Runners() {
				if r.ID == cfg.RunnerID {
					got = r
				}
			}
			tc.wantRecorded.ID = cfg.RunnerID
			if diff := cmp.Diff(tc.wantRecorded, got); diff != "" {
				t.Errorf("recorded runner (-want +got):\n%s", diff)
			}
		})
	}
	for _, r := range f.srv.Requests() {
		if strings.Contains(r.Path, "registration-token") {
			t.Errorf("the client asked for a registration token: %s %s", r.Method, r.Path)
		}
	}
}

func TestGenerateJITConfigOptions(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	_, err := f.app.GenerateJITConfig(testContext(t), 1, github.RunnerTarget{Org: "octo-org"}, github.JITRequest{
		Name: "nimbus-gpu-7", Labels: []string{"gpu", "linux"}, RunnerGroupID: 5, WorkFolder: "work/jobs",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := f.srv.Runners()[0]
	if got.RunnerGroupID != 5 || got.WorkFolder != "work/jobs" {
		t.Errorf("runner group %d, work folder %q; want 5 and work/jobs", got.RunnerGroupID, got.WorkFolder)
	}
}

func TestGenerateJITConfigOutsideInstallation(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	req := github.JITRequest{Name: "r1", Labels: []string{"x"}}
	for _, tc := range []struct {
		name   string
		inst   int64
		target github.RunnerTarget
	}{
		{"another org", 1, github.RunnerTarget{Org: "evil-org"}},
		{"a repository of another account", 2, github.RunnerTarget{Repo: "bob/app"}},
		{"a user account as an org", 2, github.RunnerTarget{Org: "alice"}},
		{"an unselected repository", 3, github.RunnerTarget{Repo: "acme/web"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.app.GenerateJITConfig(ctx, tc.inst, tc.target, req)
			if !errors.Is(err, github.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
		})
	}
	if _, err := f.app.GenerateJITConfig(ctx, 3, github.RunnerTarget{Repo: "acme/api"}, req); err != nil {
		t.Fatalf("selected repository: %v", err)
	}
}

func TestGenerateJITConfigValidatesBeforeCalling(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	labels := func(n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = fmt.Sprintf("l%d", i)
		}
		return l
	}
	org := github.RunnerTarget{Org: "octo-org"}
	for _, tc := range []struct {
		name   string
		inst   int64
		target github.RunnerTarget
		req    github.JITRequest
		want   string
	}{
		{"no labels", 1, org, github.JITRequest{Name: "r"}, "1 to 100 labels, got 0"},
		{"101 labels", 1, org, github.JITRequest{Name: "r", Labels: labels(101)}, "1 to 100 labels, got 101"},
		{"empty label", 1, org, github.JITRequest{Name: "r", Labels: []string{"a", ""}}, "label 1 is empty"},
		{"label with comma", 1, org, github.JITRequest{Name: "r", Labels: []string{"a,b"}}, "label 0 contains a comma"},
		{"label with newline", 1, org, github.JITRequest{Name: "r", Labels: []string{"a\nb"}}, "label 0 contains a control character"},
		{"label padded", 1, org, github.JITRequest{Name: "r", Labels: []string{" a"}}, "label 0 has leading or trailing spaces"},
		{"duplicate label", 1, org, github.JITRequest{Name: "r", Labels: []string{"GPU", "gpu"}}, `label 1 repeats label "GPU"`},
		{"no name", 1, org, github.JITRequest{Labels: []string{"a"}}, "runner name"},
		{"name with space", 1, org, github.JITRequest{Name: "my runner", Labels: []string{"a"}}, "runner name"},
		{"name too long", 1, org, github.JITRequest{Name: strings.Repeat("n", 65), Labels: []string{"a"}}, "runner name"},
		{"negative group", 1, org, github.JITRequest{Name: "r", Labels: []string{"a"}, RunnerGroupID: -1}, "runner group id"},
		{"absolute work folder", 1, org, github.JITRequest{Name: "r", Labels: []string{"a"}, WorkFolder: "/tmp"}, "work folder"},
		{"escaping work folder", 1, org, github.JITRequest{Name: "r", Labels: []string{"a"}, WorkFolder: "../x"}, "work folder"},
		{"no target", 1, github.RunnerTarget{}, github.JITRequest{Name: "r", Labels: []string{"a"}}, "neither Org nor Repo"},
		{"both targets", 1, github.RunnerTarget{Org: "o", Repo: "o/r"}, github.JITRequest{Name: "r", Labels: []string{"a"}}, "both Org and Repo"},
		{"repo without owner", 1, github.RunnerTarget{Repo: "hello"}, github.JITRequest{Name: "r", Labels: []string{"a"}}, "is not owner/name"},
		{"path traversal", 1, github.RunnerTarget{Repo: "octo-org/../../app"}, github.JITRequest{Name: "r", Labels: []string{"a"}}, "is not owner/name"},
		{"org with slash", 1, github.RunnerTarget{Org: "a/b"}, github.JITRequest{Name: "r", Labels: []string{"a"}}, "not a valid login"},
		{"no installation", 0, org, github.JITRequest{Name: "r", Labels: []string{"a"}}, "installation id must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.app.GenerateJITConfig(ctx, tc.inst, tc.target, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if reqs := f.srv.Requests(); len(reqs) != 0 {
		t.Fatalf("invalid requests reached GitHub: %+v", reqs)
	}
}

func TestServerErrorsRetried(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, func(c *github.AppConfig) { c.RetryBaseDelay = 100 * time.Millisecond })
	f.srv.InjectFault(githubtest.Fault{Method: "POST", PathSuffix: "/access_tokens", Status: http.StatusBadGateway, Times: 1})
	f.srv.InjectFault(githubtest.Fault{Method: "POST", PathSuffix: "/generate-jitconfig", Status: http.StatusServiceUnavailable, Times: 2})
	cfg, err := f.app.GenerateJITConfig(testContext(t), 1, github.RunnerTarget{Org: "octo-org"}, github.JITRequest{Name: "r1", Labels: []string{"a"}})
	if err != nil {
		t.Fatalf("GenerateJITConfig: %v", err)
	}
	if cfg.RunnerID == 0 || len(f.srv.Runners()) != 1 {
		t.Fatalf("config %v, runners %d; want one runner", cfg, len(f.srv.Runners()))
	}
	delays := f.sleeps.Delays()
	if len(delays) != 3 {
		t.Fatalf("waits = %v, want 3 (one per 5xx)", delays)
	}
	for i, bounds := range [][2]time.Duration{{50, 100}, {50, 100}, {100, 200}} {
		lo, hi := bounds[0]*time.Millisecond, bounds[1]*time.Millisecond
		if delays[i] < lo || delays[i] > hi {
			t.Errorf("wait %d = %v, want jittered in [%v, %v]", i, delays[i], lo, hi)
		}
	}
}

func TestServerErrorsGiveUp(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	if _, err := f.app.InstallationToken(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.srv.InjectFault(githubtest.Fault{Method: "DELETE", Status: http.StatusInternalServerError, Message: "boom", Times: 10})
	err := f.app.RemoveRunner(ctx, 1, github.RunnerTarget{Org: "octo-org"}, 5)
	var ae *github.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 500 || ae.Message != "boom" || !github.Retryable(err) {
		t.Fatalf("err = %v, want a retryable APIError 500 with message boom", err)
	}
	if n := count(f.srv, "DELETE", "/5"); n != 3 {
		t.Fatalf("attempts = %d, want 3", n)
	}
}

func TestRateLimits(t *testing.T) {
	secondary := "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
	for _, tc := range []struct {
		name      string
		fault     githubtest.Fault
		wantErr   bool
		wantWaits []time.Duration
		wantAfter time.Duration
	}{
		{
			name:      "secondary limit with Retry-After is honoured",
			fault:     githubtest.Fault{Status: 403, Message: secondary, Header: http.Header{"Retry-After": {"7"}}},
			wantWaits: []time.Duration{7 * time.Second},
		},
		{
			name:      "429 with Retry-After is honoured",
			fault:     githubtest.Fault{Status: 429, Header: http.Header{"Retry-After": {"2"}}},
			wantWaits: []time.Duration{2 * time.Second},
		},
		{
			name:      "Retry-After beyond the cap is returned, not waited",
			fault:     githubtest.Fault{Status: 403, Message: secondary, Header: http.Header{"Retry-After": {"120"}}},
			wantErr:   true,
			wantAfter: 120 * time.Second,
		},
		{
			name: "primary limit exhausted until reset",
			fault: githubtest.Fault{Status: 403, Message: "API rate limit exceeded for installation ID 1.", Header: http.Header{
				"X-Ratelimit-Remaining": {"0"},
				"X-Ratelimit-Reset":     {fmt.Sprint(newFakeClock().Now().Add(30 * time.Minute).Unix())},
			}},
			wantErr:   true,
			wantAfter: 30 * time.Minute,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, githubtest.Config{}, nil)
			tc.fault.PathSuffix = "/generate-jitconfig"
			f.srv.InjectFault(tc.fault)
			_, err := f.app.GenerateJITConfig(testContext(t), 1, github.RunnerTarget{Org: "octo-org"}, github.JITRequest{Name: "r1", Labels: []string{"a"}})
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("GenerateJITConfig: %v", err)
				}
			} else {
				var ae *github.APIError
				if !errors.As(err, &ae) || !ae.RateLimited || ae.RetryAfter != tc.wantAfter || !github.Retryable(err) {
					t.Fatalf("err = %v (%+v), want a rate-limited APIError with RetryAfter %v", err, ae, tc.wantAfter)
				}
			}
			if diff := cmp.Diff(tc.wantWaits, f.sleeps.Delays()); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientErrorsSurfaced(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	target := github.RunnerTarget{Org: "octo-org"}
	req := github.JITRequest{Name: "nimbus-dup", Labels: []string{"a"}}
	if _, err := f.app.GenerateJITConfig(ctx, 1, target, req); err != nil {
		t.Fatal(err)
	}
	_, err := f.app.GenerateJITConfig(ctx, 1, target, req)
	var ae *github.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || github.Retryable(err) {
		t.Fatalf("err = %v, want a non-retryable APIError 409", err)
	}
	const want = "Already exists - A runner with the name nimbus-dup already exists."
	if ae.Message != want || !strings.Contains(err.Error(), want) {
		t.Errorf("message %q, error %q; want GitHub's %q", ae.Message, err, want)
	}
	if n := count(f.srv, "POST", "/generate-jitconfig"); n != 2 {
		t.Errorf("jitconfig requests = %d, want 2 (a 4xx is not retried)", n)
	}
	f.srv.InjectFault(githubtest.Fault{Status: 422, Message: "Validation Failed", PathSuffix: "/generate-jitconfig"})
	_, err = f.app.GenerateJITConfig(ctx, 1, target, github.JITRequest{Name: "other", Labels: []string{"a"}})
	if !errors.As(err, &ae) || ae.StatusCode != 422 || ae.Message != "Validation Failed" {
		t.Errorf("err = %v, want APIError 422 Validation Failed", err)
	}
}

func TestRefusedCachedTokenIsReplaced(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	old, err := f.app.InstallationToken(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.RevokeTokens(1)
	if _, err := f.app.GenerateJITConfig(ctx, 1, github.RunnerTarget{Org: "octo-org"}, github.JITRequest{Name: "r1", Labels: []string{"a"}}); err != nil {
		t.Fatalf("GenerateJITConfig after revocation: %v", err)
	}
	if n := f.srv.TokensIssued(1); n != 2 {
		t.Fatalf("tokens issued = %d, want 2", n)
	}
	if tok, _ := f.app.InstallationToken(ctx, 1); tok == old {
		t.Fatalf("the refused token is still cached")
	}
	// The fresh token is cached in its turn; when it is refused too, the
	// request is retried once with another, and then the error surfaces.
	f.srv.InjectFault(githubtest.Fault{Status: 401, Message: "Bad credentials", PathSuffix: "/generate-jitconfig", Times: 2})
	_, err = f.app.GenerateJITConfig(ctx, 1, github.RunnerTarget{Org: "octo-org"}, github.JITRequest{Name: "r2", Labels: []string{"a"}})
	var ae *github.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Message != "Bad credentials" {
		t.Fatalf("err = %v, want APIError 401 Bad credentials", err)
	}
	if n, issued := count(f.srv, "POST", "/generate-jitconfig"), f.srv.TokensIssued(1); n != 2+2 || issued != 3 {
		t.Fatalf("jitconfig requests = %d, tokens issued = %d; want 4 and 3", n, issued)
	}
}

func TestRefusedFreshTokenNotRetried(t *testing.T) {
	// Tokens this short-lived are never cached, so each is fresh.
	f := newFixture(t, githubtest.Config{TokenLifetime: 4 * time.Minute}, nil)
	f.srv.InjectFault(githubtest.Fault{Status: 401, Message: "Bad credentials", PathSuffix: "/generate-jitconfig"})
	_, err := f.app.GenerateJITConfig(testContext(t), 1, github.RunnerTarget{Org: "octo-org"}, github.JITRequest{Name: "r1", Labels: []string{"a"}})
	var ae *github.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 401 {
		t.Fatalf("err = %v, want APIError 401", err)
	}
	if n := count(f.srv, "POST", "/generate-jitconfig"); n != 1 {
		t.Fatalf("jitconfig requests = %d, want 1", n)
	}
}

func TestRemoveRunner(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	target := github.RunnerTarget{Repo: "alice/dotfiles"}
	cfg, err := f.app.GenerateJITConfig(ctx, 2, target, github.JITRequest{Name: "r1", Labels: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.app.RemoveRunner(ctx, 2, github.RunnerTarget{Repo: "alice/other"}, cfg.RunnerID); !errors.Is(err, github.ErrNotFound) {
		t.Fatalf("removing from the wrong repository: err = %v, want ErrNotFound", err)
	}
	if err := f.app.RemoveRunner(ctx, 2, target, cfg.RunnerID); err != nil {
		t.Fatalf("RemoveRunner: %v", err)
	}
	if r := f.srv.Runners()[0]; !r.Deleted {
		t.Fatalf("runner not deleted: %+v", r)
	}
	if err := f.app.RemoveRunner(ctx, 2, target, cfg.RunnerID); !errors.Is(err, github.ErrNotFound) {
		t.Fatalf("removing twice: err = %v, want ErrNotFound", err)
	}
	// The name is free again.
	if _, err := f.app.GenerateJITConfig(ctx, 2, target, github.JITRequest{Name: "r1", Labels: []string{"a"}}); err != nil {
		t.Fatalf("reusing a removed runner's name: %v", err)
	}
	if err := f.app.RemoveRunner(ctx, 2, target, 0); err == nil {
		t.Fatal("runner id 0 accepted")
	}
}

func TestJITConfigRedacted(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	cfg, err := f.app.GenerateJITConfig(testContext(t), 1, github.RunnerTarget{Org: "octo-org"}, github.JITRequest{Name: "r1", Labels: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String(), f.logs.String()} {
		if strings.Contains(s, cfg.EncodedJITConfig) {
			t.Errorf("encoded jit config leaked into %q", s)
		}
	}
	if !strings.Contains(logged.String(), `"runner_name":"r1"`) {
		t.Errorf("log line %q lacks the runner name", logged.String())
	}
}

func TestNewAppConfigErrors(t *testing.T) {
	key := githubtest.SharedKey(t)
	good := githubtest.PKCS1PEM(key)
	for _, tc := range []struct {
		name string
		cfg  github.AppConfig
		want string
	}{
		{"no issuer", github.AppConfig{PrivateKeyPEM: good}, "AppID or ClientID is required"},
		{"no key", github.AppConfig{AppID: 1}, "PrivateKeyPEM is required"},
		{"not pem", github.AppConfig{AppID: 1, PrivateKeyPEM: []byte("hello")}, "no PEM block"},
		{"certificate", github.AppConfig{AppID: 1, PrivateKeyPEM: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, `PEM block is "CERTIFICATE"`},
		{"garbage pkcs1", github.AppConfig{AppID: 1, PrivateKeyPEM: []byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")}, "parse PKCS#1 key"},
		{"bad base url", github.AppConfig{AppID: 1, PrivateKeyPEM: good, BaseURL: "ftp://example.com"}, "scheme must be https or http"},
		{"base url with query", github.AppConfig{AppID: 1, PrivateKeyPEM: good, BaseURL: "https://ghe.example.com/api/v3?x=1"}, "query"},
		{"base url with credentials", github.AppConfig{AppID: 1, PrivateKeyPEM: good, BaseURL: "https://u:p@ghe.example.com/api/v3"}, "credentials"},
		{"bad client id", github.AppConfig{ClientID: "Iv1 x", PrivateKeyPEM: good}, "ClientID"},
		{"negative attempts", github.AppConfig{AppID: 1, PrivateKeyPEM: good, MaxAttempts: -1}, "MaxAttempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := github.NewApp(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewApp err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := github.NewApp(github.AppConfig{AppID: 1, PrivateKeyPEM: good, BaseURL: "https://ghe.example.com/api/v3/"}); err != nil {
		t.Fatalf("GHES base URL: %v", err)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
