package githubtest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// makeJWT signs header and claims as given, so that tests can build tokens
// that break each rule.
func makeJWT(t *testing.T, key *rsa.PrivateKey, header, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	var sig []byte
	if key != nil {
		sum := sha256.Sum256([]byte(input))
		var err error
		if sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:]); err != nil {
			t.Fatal(err)
		}
	} else {
		m := hmac.New(sha256.New, []byte("secret"))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	}
	return input + "." + enc.EncodeToString(sig)
}

type apiResult struct {
	status int
	body   map[string]any
}

func call(t *testing.T, srv *githubtest.Server, method, path, auth string, body any) apiResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	res := apiResult{status: resp.StatusCode}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &res.body); err != nil {
			t.Fatalf("%s %s: response is not a JSON object: %q", method, path, data)
		}
	}
	return res
}

func setup(t *testing.T, cfg githubtest.Config) (*githubtest.Server, *rsa.PrivateKey, *clock) {
	c := &clock{t: time.Unix(1_714_564_800, 0)}
	if cfg.Now == nil {
		cfg.Now = c.Now
	}
	srv := githubtest.NewServer(t, cfg)
	key := githubtest.SharedKey(t)
	srv.AddApp(githubtest.App{ID: 7, ClientID: "Iv23liABC", PublicKey: &key.PublicKey})
	srv.AddInstallation(githubtest.Installation{ID: 70, AppID: 7, Account: "octo-org", AccountType: "Organization"})
	srv.AddInstallation(githubtest.Installation{ID: 71, AppID: 7, Account: "alice", AccountType: "User", Repositories: []string{"alice/app"}})
	return srv, key, c
}

func TestAppJWTVerification(t *testing.T) {
	srv, key, c := setup(t, githubtest.Config{})
	now := c.Now().Unix()
	claims := func(iat, exp int64, iss string) string {
		return `{"iat":` + itoa(iat) + `,"exp":` + itoa(exp) + `,"iss":` + iss + `}`
	}
	rs256 := `{"alg":"RS256","typ":"JWT"}`
	for _, tc := range []struct {
		name   string
		token  string
		status int
		msg    string
	}{
		{"valid, numeric iss", makeJWT(t, key, rs256, claims(now-60, now+540, "7")), 201, ""},
		{"valid, string app id", makeJWT(t, key, rs256, claims(now-60, now+540, `"7"`)), 201, ""},
		{"valid, client id", makeJWT(t, key, rs256, claims(now-60, now+540, `"Iv23liABC"`)), 201, ""},
		{"iat slightly ahead (skew)", makeJWT(t, key, rs256, claims(now+30, now+540, "7")), 201, ""},
		{"other key", makeJWT(t, githubtest.GenerateKey(t), rs256, claims(now-60, now+540, "7")), 401, "could not be decoded"},
		{"alg none", makeJWT(t, key, `{"alg":"none"}`, claims(now-60, now+540, "7")), 401, "alg must be RS256"},
		{"alg HS256", makeJWT(t, nil, `{"alg":"HS256"}`, claims(now-60, now+540, "7")), 401, "alg must be RS256"},
		{"unknown issuer", makeJWT(t, key, rs256, claims(now-60, now+540, "8")), 401, "Issuer"},
		{"no issuer", makeJWT(t, key, rs256, `{"iat":1,"exp":2}`), 401, "Issuer"},
		{"iat in the future", makeJWT(t, key, rs256, claims(now+120, now+540, "7")), 401, "'Issued at' claim"},
		{"iat a string", makeJWT(t, key, rs256, `{"iat":"`+itoa(now)+`","exp":`+itoa(now+60)+`,"iss":7}`), 401, "'Issued at' claim"},
		{"expired", makeJWT(t, key, rs256, claims(now-700, now-100, "7")), 401, "'Expiration time' claim"},
		{"lives too long", makeJWT(t, key, rs256, claims(now-60, now+600, "7")), 401, "too far in the future"},
		{"exp before iat", makeJWT(t, key, rs256, claims(now, now-1+1, "7")), 401, "'Expiration time' claim"},
		{"two segments", "abc.def", 401, "could not be decoded"},
		{"not base64", "a!.b!.c!", 401, "could not be decoded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := call(t, srv, "POST", "/app/installations/70/access_tokens", "Bearer "+tc.token, nil)
			if res.status != tc.status {
				t.Fatalf("status %d (%v), want %d", res.status, res.body, tc.status)
			}
			if msg, _ := res.body["message"].(string); !strings.Contains(msg, tc.msg) {
				t.Fatalf("message %q, want it to contain %q", msg, tc.msg)
			}
			if tc.status == 201 {
				tok, _ := res.body["token"].(string)
				exp, err := time.Parse(time.RFC3339, res.body["expires_at"].(string))
				if !strings.HasPrefix(tok, "ghs_") || err != nil || !exp.Equal(c.Now().Add(time.Hour)) {
					t.Fatalf("token %q expires_at %v (%v); want ghs_… in one hour", tok, exp, err)
				}
			}
		})
	}
	if res := call(t, srv, "POST", "/app/installations/70/access_tokens", "", nil); res.status != 401 {
		t.Errorf("no credentials: status %d, want 401", res.status)
	}
	// Another App's installation, or none, is not found.
	good := makeJWT(t, key, rs256, claims(now-60, now+540, "7"))
	if res := call(t, srv, "POST", "/app/installations/99/access_tokens", "Bearer "+good, nil); res.status != 404 {
		t.Errorf("unknown installation: status %d, want 404", res.status)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func token(t *testing.T, srv *githubtest.Server, key *rsa.PrivateKey, c *clock, inst int64) string {
	t.Helper()
	tok, err := tokenErr(t, srv, key, c, inst)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tokenErr gets an installation token without failing the test, so that it
// can run outside the test's goroutine.
func tokenErr(t *testing.T, srv *githubtest.Server, key *rsa.PrivateKey, c *clock, inst int64) (string, error) {
	now := c.Now().Unix()
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString([]byte(`{"iat":`+itoa(now-60)+`,"exp":`+itoa(now+540)+`,"iss":7}`))
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/app/installations/"+itoa(inst)+"/access_tokens", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+input+"."+enc.EncodeToString(sig))
	resp, err := srv.Client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	if resp.StatusCode != 201 || body.Token == "" {
		return "", fmt.Errorf("token: status %d", resp.StatusCode)
	}
	return body.Token, nil
}

func TestJITConfigEndpoint(t *testing.T) {
	srv, key, c := setup(t, githubtest.Config{TokenLifetime: 10 * time.Minute})
	tok := "Bearer " + token(t, srv, key, c, 70)
	body := map[string]any{"name": "r1", "runner_group_id": 1, "labels": []string{"self-hosted", "gpu"}}
	res := call(t, srv, "POST", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, body)
	if res.status != 201 {
		t.Fatalf("status %d %v", res.status, res.body)
	}
	runner := res.body["runner"].(map[string]any)
	doc, err := githubtest.DecodeJITConfig(res.body["encoded_jit_config"].(string))
	if err != nil {
		t.Fatal(err)
	}
	want := githubtest.JITDocument{RunnerID: int64(runner["id"].(float64)), RunnerName: "r1", Labels: []string{"self-hosted", "gpu"},
		RunnerGroupID: 1, WorkFolder: "_work", URL: "https://github.com/octo-org", Credential: doc.Credential}
	if diff := cmp.Diff(want, doc); diff != "" || len(doc.Credential) < 20 {
		t.Errorf("jit document (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name   string
		path   string
		auth   string
		body   any
		status int
		msg    string
	}{
		{"no name", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, map[string]any{"runner_group_id": 1, "labels": []string{"a"}}, 422, `"name" wasn't supplied`},
		{"no group", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, map[string]any{"name": "x", "labels": []string{"a"}}, 422, `"runner_group_id" wasn't supplied`},
		{"no labels", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, map[string]any{"name": "x", "runner_group_id": 1, "labels": []string{}}, 422, `"labels" wasn't supplied`},
		{"101 labels", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, map[string]any{"name": "x", "runner_group_id": 1, "labels": make([]string, 101)}, 422, "maximum is 100"},
		{"empty label", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, map[string]any{"name": "x", "runner_group_id": 1, "labels": []string{""}}, 422, "too short"},
		{"not json", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, "not an object", 400, "Problems parsing JSON"},
		{"duplicate name", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, body, 409, "Already exists"},
		{"other org", "/orgs/other/actions/runners/generate-jitconfig", tok, body, 404, "Not Found"},
		{"org token for a repo", "/repos/alice/app/actions/runners/generate-jitconfig", tok, body, 404, "Not Found"},
		{"no token", "/orgs/octo-org/actions/runners/generate-jitconfig", "", body, 401, "Requires authentication"},
		{"unknown token", "/orgs/octo-org/actions/runners/generate-jitconfig", "token ghs_nope", body, 401, "Bad credentials"},
		{"registration token", "/orgs/octo-org/actions/runners/registration-token", tok, nil, 404, "Not Found"},
		{"unknown route", "/users/octo/hovercard", tok, nil, 404, "Not Found"},
		{"wrong method", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, nil, 404, "Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if tc.name == "wrong method" || tc.name == "unknown route" {
				method = "GET"
			}
			res := call(t, srv, method, tc.path, tc.auth, tc.body)
			msg, _ := res.body["message"].(string)
			if res.status != tc.status || !strings.Contains(msg, tc.msg) {
				t.Fatalf("status %d %q, want %d %q", res.status, msg, tc.status, tc.msg)
			}
			if res.body["documentation_url"] == nil {
				t.Errorf("error body %v lacks documentation_url", res.body)
			}
		})
	}

	// Repository installations cover only their selected repositories.
	utok := "Bearer " + token(t, srv, key, c, 71)
	if res := call(t, srv, "POST", "/repos/alice/app/actions/runners/generate-jitconfig", utok, body); res.status != 201 {
		t.Errorf("selected repo: status %d %v", res.status, res.body)
	}
	if res := call(t, srv, "POST", "/repos/alice/other/actions/runners/generate-jitconfig", utok, body); res.status != 404 {
		t.Errorf("unselected repo: status %d, want 404", res.status)
	}

	// Tokens expire on the emulator's clock.
	c.Advance(10 * time.Minute)
	if res := call(t, srv, "POST", "/orgs/octo-org/actions/runners/generate-jitconfig", tok, body); res.status != 401 {
		t.Errorf("expired token: status %d, want 401", res.status)
	}
	if got, want := srv.TokensIssued(70), 1; got != want {
		t.Errorf("TokensIssued(70) = %d, want %d", got, want)
	}
}

func TestDeleteRunnerEndpoint(t *testing.T) {
	srv, key, c := setup(t, githubtest.Config{})
	tok := "Bearer " + token(t, srv, key, c, 70)
	res := call(t, srv, "POST", "/orgs/octo-org/actions/runners/generate-jitconfig", tok,
		map[string]any{"name": "r1", "runner_group_id": 1, "labels": []string{"a"}})
	id := itoa(int64(res.body["runner"].(map[string]any)["id"].(float64)))
	if res := call(t, srv, "DELETE", "/orgs/octo-org/actions/runners/"+id, tok, nil); res.status != 204 {
		t.Fatalf("delete: status %d %v", res.status, res.body)
	}
	if res := call(t, srv, "DELETE", "/orgs/octo-org/actions/runners/"+id, tok, nil); res.status != 404 {
		t.Fatalf("delete twice: status %d, want 404", res.status)
	}
	if res := call(t, srv, "DELETE", "/orgs/octo-org/actions/runners/abc", tok, nil); res.status != 404 {
		t.Fatalf("delete non-numeric id: status %d, want 404", res.status)
	}
	got := srv.Runners()
	if len(got) != 1 || !got[0].Deleted || got[0].Org != "octo-org" || got[0].InstallationID != 70 {
		t.Fatalf("runners = %+v", got)
	}
}

func TestFaults(t *testing.T) {
	srv, _, _ := setup(t, githubtest.Config{})
	srv.InjectFault(githubtest.Fault{Method: "GET", PathSuffix: "/x", Status: 503, Header: http.Header{"Retry-After": {"3"}}, Times: 2})
	for i, want := range []int{503, 503, 404} {
		if res := call(t, srv, "GET", "/x", "", nil); res.status != want {
			t.Errorf("request %d: status %d, want %d", i, res.status, want)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[0] != (githubtest.Request{Method: "GET", Path: "/x", Status: 503}) {
		t.Errorf("requests = %+v", reqs)
	}
}

func TestPauseTokens(t *testing.T) {
	srv, key, c := setup(t, githubtest.Config{})
	release := srv.PauseTokens()
	done := make(chan error, 1)
	go func() {
		_, err := tokenErr(t, srv, key, c, 70)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for srv.PendingTokenRequests() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("token request never arrived")
		}
		time.Sleep(time.Millisecond)
	}
	if n := srv.TokensIssued(70); n != 0 {
		t.Fatalf("token issued while paused: %d", n)
	}
	release()
	if err := <-done; err != nil {
		t.Fatalf("after release: %v", err)
	}
}
