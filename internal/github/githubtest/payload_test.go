package githubtest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

func TestSignGitHubTestVector(t *testing.T) {
	got := githubtest.Sign([]byte("It's a Secret to Everybody"), []byte("Hello, World!"))
	const want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

func TestWorkflowJobPayloadShape(t *testing.T) {
	decode := func(o githubtest.WorkflowJobOptions) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(githubtest.WorkflowJobPayload(o), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	org := decode(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 5})
	job := org["workflow_job"].(map[string]any)
	repo := org["repository"].(map[string]any)
	owner := repo["owner"].(map[string]any)
	got := map[string]any{
		"action": org["action"], "id": job["id"], "run_id": job["run_id"], "run_attempt": job["run_attempt"],
		"status": job["status"], "conclusion": job["conclusion"], "runner_name": job["runner_name"],
		"runner_id": job["runner_id"], "labels": job["labels"], "head_sha": job["head_sha"],
		"full_name": repo["full_name"], "owner.type": owner["type"], "owner.id": owner["id"],
		"installation.id":    org["installation"].(map[string]any)["id"],
		"organization.login": org["organization"].(map[string]any)["login"],
	}
	want := map[string]any{
		"action": "queued", "id": 29679449.0, "run_id": 10741946.0, "run_attempt": 1.0,
		"status": "queued", "conclusion": nil, "runner_name": nil, "runner_id": nil,
		"labels":   []any{"self-hosted", "linux", "x64"},
		"head_sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e", "full_name": "octo-org/hello-world",
		"owner.type": "Organization", "owner.id": 6811672.0, "installation.id": 5.0, "organization.login": "octo-org",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("org payload (-want +got):\n%s", diff)
	}

	user := decode(githubtest.WorkflowJobOptions{Action: "completed", Owner: "alice", OwnerType: "User", OmitRunAttempt: true})
	job = user["workflow_job"].(map[string]any)
	if _, ok := user["organization"]; ok {
		t.Error("user-owned payload has an organization")
	}
	if _, ok := user["installation"]; ok {
		t.Error("payload without InstallationID has an installation")
	}
	if _, ok := job["run_attempt"]; ok {
		t.Error("OmitRunAttempt payload has run_attempt")
	}
	if job["conclusion"] != "success" || job["runner_name"] != "nimbus-runner-1" || job["status"] != "completed" {
		t.Errorf("completed job defaults: %v %v %v", job["conclusion"], job["runner_name"], job["status"])
	}
	if user["repository"].(map[string]any)["full_name"] != "alice/hello-world" {
		t.Errorf("full_name = %v", user["repository"].(map[string]any)["full_name"])
	}
}

func TestDeliver(t *testing.T) {
	got := make(chan http.Header, 1)
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotBody, _ = io.ReadAll(r.Body)
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := githubtest.PingPayload(1, 2)
	resp, err := githubtest.Deliver(ctx, srv.Client(), srv.URL, []byte("k"), "ping", "d-1", body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := <-got
	if resp.StatusCode != http.StatusAccepted || string(gotBody) != string(body) {
		t.Fatalf("status %d, body %q", resp.StatusCode, gotBody)
	}
	for name, want := range map[string]string{
		"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d-1", "X-GitHub-Hook-ID": githubtest.DefaultHookID,
		"X-GitHub-Hook-Installation-Target-Type": "integration", "X-GitHub-Hook-Installation-Target-ID": githubtest.DefaultTargetID,
		"X-Hub-Signature-256": githubtest.Sign([]byte("k"), body), "Content-Type": "application/json",
	} {
		if h.Get(name) != want {
			t.Errorf("%s = %q, want %q", name, h.Get(name), want)
		}
	}
	if ua := h.Get("User-Agent"); len(ua) < 16 || ua[:16] != "GitHub-Hookshot/" {
		t.Errorf("User-Agent = %q", ua)
	}
}
