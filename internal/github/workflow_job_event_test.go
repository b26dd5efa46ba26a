package github_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWorkflowJob(t *testing.T) {
	orgRepo := github.Repository{
		ID: 186853002, Name: "hello-world", FullName: "octo-org/hello-world",
		Owner: github.Account{ID: 6811672, Login: "octo-org", Type: github.AccountOrganization}, DefaultBranch: "main",
	}
	for _, tc := range []struct {
		name string
		body []byte
		want github.WorkflowJobEvent
	}{
		{
			name: "queued, org-owned, from an App",
			body: githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 77}),
			want: github.WorkflowJobEvent{
				Action: github.ActionQueued,
				Job: github.WorkflowJob{
					ID: 29679449, RunID: 10741946, RunAttempt: 1, Name: "build",
					Labels: []string{"self-hosted", "linux", "x64"}, Status: "queued",
					HeadSHA: "6dcb09b5b57875f334f61aebed695e2e4193db5e", HeadBranch: "main", WorkflowName: "CI",
				},
				Repository:     orgRepo,
				InstallationID: 77,
				Organization:   github.Organization{ID: 6811672, Login: "octo-org"},
			},
		},
		{
			name: "in_progress, user-owned, repository hook (no installation)",
			body: githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{
				Action: "in_progress", Owner: "alice", OwnerID: 1001, OwnerType: "User", RepoName: "dotfiles",
				RepoID: 5, Private: true, RunAttempt: 3, RunnerID: 99, RunnerName: "nimbus-abc",
				Labels: []string{"nimbus"},
			}),
			want: github.WorkflowJobEvent{
				Action: github.ActionInProgress,
				Job: github.WorkflowJob{
					ID: 29679449, RunID: 10741946, RunAttempt: 3, Name: "build", Labels: []string{"nimbus"},
					Status: "in_progress", RunnerID: 99, RunnerName: "nimbus-abc",
					HeadSHA: "6dcb09b5b57875f334f61aebed695e2e4193db5e", HeadBranch: "main", WorkflowName: "CI",
				},
				Repository: github.Repository{
					ID: 5, Name: "dotfiles", FullName: "alice/dotfiles", Private: true,
					Owner: github.Account{ID: 1001, Login: "alice", Type: github.AccountUser}, DefaultBranch: "main",
				},
			},
		},
		{
			name: "waiting for an environment approval, runs-on a group only",
			body: githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "waiting", Labels: []string{}}),
			want: github.WorkflowJobEvent{
				Action: github.ActionWaiting,
				Job: github.WorkflowJob{
					ID: 29679449, RunID: 10741946, RunAttempt: 1, Name: "build", Status: "waiting",
					HeadSHA: "6dcb09b5b57875f334f61aebed695e2e4193db5e", HeadBranch: "main", WorkflowName: "CI",
				},
				Repository:   orgRepo,
				Organization: github.Organization{ID: 6811672, Login: "octo-org"},
			},
		},
		{
			name: "completed, old payload without run_attempt or workflow_name",
			body: readTestdata(t, "workflow_job_completed_2021.json"),
			want: github.WorkflowJobEvent{
				Action: github.ActionCompleted,
				Job: github.WorkflowJob{
					ID: 2832853555, RunID: 940463255, RunAttempt: 1, Name: "test (ubuntu, 3.9)",
					Labels: []string{"self-hosted", "gpu"}, Status: "completed", Conclusion: "failure",
					RunnerID: 2, RunnerName: "nimbus-7f3a", HeadSHA: "e3103f8eb03e1ad7f2331c5446b23c070fc54055",
				},
				Repository: github.Repository{
					ID: 376034443, Name: "example-workflow", FullName: "mona/example-workflow", Private: true,
					Owner: github.Account{ID: 21031067, Login: "mona", Type: github.AccountUser}, DefaultBranch: "main",
				},
				InstallationID: 17263510,
			},
		},
		{
			name: "queued, second attempt, with enterprise",
			body: readTestdata(t, "workflow_job_queued_org.json"),
			want: github.WorkflowJobEvent{
				Action: github.ActionQueued,
				Job: github.WorkflowJob{
					ID: 20455187332, RunID: 7401113944, RunAttempt: 2, Name: "bazel test //...",
					Labels: []string{"self-hosted", "linux", "x64", "nimbus-large"}, Status: "queued",
					HeadSHA: "1b7e4f8c9d0a2b3c4d5e6f708192a3b4c5d6e7f8", HeadBranch: "feature/cache",
					WorkflowName: "Build and test",
				},
				Repository: github.Repository{
					ID: 684642346, Name: "octo-repo", FullName: "octo-org/octo-repo",
					Owner: github.Account{ID: 6811672, Login: "octo-org", Type: github.AccountOrganization}, DefaultBranch: "main",
				},
				InstallationID: 45012993,
				Organization:   github.Organization{ID: 6811672, Login: "octo-org"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := github.ParseWorkflowJob(tc.body)
			if err != nil {
				t.Fatalf("ParseWorkflowJob: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("event mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Deliveries about one job arrive in any order; each parses on its own and
// all name the same job key, which a retry of the run changes.
func TestParseWorkflowJobOutOfOrder(t *testing.T) {
	opts := githubtest.WorkflowJobOptions{InstallationID: 3, RunAttempt: 2}
	var keys []string
	for _, action := range []string{"completed", "in_progress", "queued", "waiting"} {
		o := opts
		o.Action = action
		ev, err := github.ParseWorkflowJob(githubtest.WorkflowJobPayload(o))
		if err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		if string(ev.Action) != action {
			t.Errorf("Action = %q, want %q", ev.Action, action)
		}
		keys = append(keys, ev.JobKey())
	}
	want := []string{"186853002/29679449/2", "186853002/29679449/2", "186853002/29679449/2", "186853002/29679449/2"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("job keys (-want +got):\n%s", diff)
	}
	opts.RunAttempt = 3
	ev, err := github.ParseWorkflowJob(githubtest.WorkflowJobPayload(opts))
	if err != nil {
		t.Fatal(err)
	}
	if ev.JobKey() == keys[0] {
		t.Errorf("a re-run (attempt 3) has the same key as attempt 2: %s", ev.JobKey())
	}
	opts.RunAttempt, opts.OmitRunAttempt = 0, true
	if ev, err := github.ParseWorkflowJob(githubtest.WorkflowJobPayload(opts)); err != nil || ev.Job.RunAttempt != 1 {
		t.Errorf("payload without run_attempt: attempt %d, err %v; want 1, nil", ev.Job.RunAttempt, err)
	}
}

func TestParseWorkflowJobUnknownAction(t *testing.T) {
	for _, action := range []string{"requested", "Queued", "", "deleted"} {
		body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued"})
		body = mutatePayload(t, body, func(m map[string]any) { m["action"] = action })
		_, err := github.ParseWorkflowJob(body)
		if !errors.Is(err, github.ErrUnknownAction) || errors.Is(err, github.ErrInvalidPayload) {
			t.Errorf("action %q: err = %v, want ErrUnknownAction only", action, err)
		}
	}
}

// mutatePayload decodes a payload, lets f change it and encodes it again.
func mutatePayload(t testing.TB, body []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func TestParseWorkflowJobInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action string // "queued" by default
		mutate func(m map[string]any)
		field  string // the PayloadError's Field; "" for a whole-body error
		reason string // a substring of the error
	}{
		{"action missing", "", func(m map[string]any) { delete(m, "action") }, "action", "is missing"},
		{"action null", "", func(m map[string]any) { m["action"] = nil }, "action", "is missing"},
		{"action a number", "", func(m map[string]any) { m["action"] = 3 }, "action", "JSON number where string"},
		{"workflow_job missing", "", func(m map[string]any) { delete(m, "workflow_job") }, "workflow_job", "is missing"},
		{"workflow_job an array", "", func(m map[string]any) { m["workflow_job"] = []any{} }, "workflow_job", "JSON array"},
		{"job id missing", "", func(m map[string]any) { delete(obj(m, "workflow_job"), "id") }, "workflow_job.id", "is missing"},
		{"job id zero", "", func(m map[string]any) { obj(m, "workflow_job")["id"] = 0 }, "workflow_job.id", "must be positive"},
		{"job id a string", "", func(m map[string]any) { obj(m, "workflow_job")["id"] = "29679449" }, "workflow_job.id", "JSON string where int64"},
		{"job id fractional", "", func(m map[string]any) { obj(m, "workflow_job")["id"] = 1.5 }, "workflow_job.id", "JSON number 1.5"},
		{"job id overflows", "", func(m map[string]any) { obj(m, "workflow_job")["id"] = json.Number("99999999999999999999") }, "workflow_job.id", "JSON number 99999999999999999999"},
		{"run id missing", "", func(m map[string]any) { delete(obj(m, "workflow_job"), "run_id") }, "workflow_job.run_id", "is missing"},
		{"run attempt zero", "", func(m map[string]any) { obj(m, "workflow_job")["run_attempt"] = 0 }, "workflow_job.run_attempt", "must be positive"},
		{"name missing", "", func(m map[string]any) { delete(obj(m, "workflow_job"), "name") }, "workflow_job.name", "is missing"},
		{"name with a newline", "", func(m map[string]any) { obj(m, "workflow_job")["name"] = "a\nb" }, "workflow_job.name", "control characters"},
		{"labels not strings", "", func(m map[string]any) { obj(m, "workflow_job")["labels"] = []any{1} }, "workflow_job.labels", "JSON number where string"},
		{"label empty", "", func(m map[string]any) { obj(m, "workflow_job")["labels"] = []any{"linux", ""} }, "workflow_job.labels[1]", "is empty"},
		{"label null", "", func(m map[string]any) { obj(m, "workflow_job")["labels"] = []any{nil} }, "workflow_job.labels[0]", "is empty"},
		{"label with comma", "", func(m map[string]any) { obj(m, "workflow_job")["labels"] = []any{"a,b"} }, "workflow_job.labels[0]", "comma"},
		{"label too long", "", func(m map[string]any) { obj(m, "workflow_job")["labels"] = []any{strings.Repeat("l", 257)} }, "workflow_job.labels[0]", "257 bytes"},
		{"too many labels", "", func(m map[string]any) {
			l := make([]any, 101)
			for i := range l {
				l[i] = "x"
			}
			obj(m, "workflow_job")["labels"] = l
		}, "workflow_job.labels", "has 101 labels"},
		{"status missing", "", func(m map[string]any) { delete(obj(m, "workflow_job"), "status") }, "workflow_job.status", "is missing"},
		{"status odd", "", func(m map[string]any) { obj(m, "workflow_job")["status"] = "Queued!" }, "workflow_job.status", "not a status"},
		{"completed without conclusion", "completed", func(m map[string]any) { obj(m, "workflow_job")["conclusion"] = nil }, "workflow_job.conclusion", "missing on a completed job"},
		{"in_progress without runner", "in_progress", func(m map[string]any) { obj(m, "workflow_job")["runner_name"] = nil }, "workflow_job.runner_name", "missing on an in_progress job"},
		{"runner id negative", "in_progress", func(m map[string]any) { obj(m, "workflow_job")["runner_id"] = -1 }, "workflow_job.runner_id", "must not be negative"},
		{"head sha short", "", func(m map[string]any) { obj(m, "workflow_job")["head_sha"] = "6dcb09b" }, "workflow_job.head_sha", "hex object id"},
		{"head sha upper case", "", func(m map[string]any) {
			obj(m, "workflow_job")["head_sha"] = "6DCB09B5B57875F334F61AEBED695E2E4193DB5E"
		}, "workflow_job.head_sha", "hex object id"},
		{"head sha missing", "", func(m map[string]any) { delete(obj(m, "workflow_job"), "head_sha") }, "workflow_job.head_sha", "is missing"},
		{"repository missing", "", func(m map[string]any) { delete(m, "repository") }, "repository", "is missing"},
		{"repository id missing", "", func(m map[string]any) { delete(obj(m, "repository"), "id") }, "repository.id", "is missing"},
		{"repository id negative", "", func(m map[string]any) { obj(m, "repository")["id"] = -4 }, "repository.id", "must be positive"},
		{"repository name with slash", "", func(m map[string]any) { obj(m, "repository")["name"] = "a/b" }, "repository.name", "not a valid repository name"},
		{"repository name dot-dot", "", func(m map[string]any) {
			obj(m, "repository")["name"] = ".."
			obj(m, "repository")["full_name"] = "octo-org/.."
		}, "repository.name", "not a valid repository name"},
		{"full name mismatch", "", func(m map[string]any) { obj(m, "repository")["full_name"] = "evil-org/hello-world" }, "repository.full_name", "not repository.owner.login/repository.name"},
		{"owner missing", "", func(m map[string]any) { delete(obj(m, "repository"), "owner") }, "repository.owner", "is missing"},
		{"owner id missing", "", func(m map[string]any) { delete(obj(obj(m, "repository"), "owner"), "id") }, "repository.owner.id", "is missing"},
		{"owner login missing", "", func(m map[string]any) { delete(obj(obj(m, "repository"), "owner"), "login") }, "repository.owner.login", "is missing"},
		{"owner type missing", "", func(m map[string]any) { delete(obj(obj(m, "repository"), "owner"), "type") }, "repository.owner.type", "is missing"},
		{"owner type bot", "", func(m map[string]any) { obj(obj(m, "repository"), "owner")["type"] = "Bot" }, "repository.owner.type", "must be"},
		{"installation without id", "", func(m map[string]any) { m["installation"] = map[string]any{"node_id": "x"} }, "installation.id", "is missing"},
		{"installation id zero", "", func(m map[string]any) { m["installation"] = map[string]any{"id": 0} }, "installation.id", "must be positive"},
		{"organization without login", "", func(m map[string]any) { delete(obj(m, "organization"), "login") }, "organization.login", "is missing"},
		{"organization is another org", "", func(m map[string]any) { obj(m, "organization")["id"] = 1 }, "organization.id", "repository's owner is 6811672"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action := tc.action
			if action == "" {
				action = "queued"
			}
			body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: action, InstallationID: 9})
			body = mutatePayload(t, body, tc.mutate)
			ev, err := github.ParseWorkflowJob(body)
			if err == nil {
				t.Fatalf("ParseWorkflowJob = %+v, want an error", ev)
			}
			if !errors.Is(err, github.ErrInvalidPayload) {
				t.Fatalf("err = %v, want ErrInvalidPayload", err)
			}
			var pe *github.PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PayloadError", err)
			}
			if pe.Field != tc.field || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("err = %v (field %q), want field %q and %q", err, pe.Field, tc.field, tc.reason)
			}
		})
	}
}

func TestParseWorkflowJobNotJSON(t *testing.T) {
	for name, body := range map[string]string{
		"empty":          "",
		"truncated":      `{"action":"queued","workflow_job":{`,
		"trailing data":  `{"action":"queued"} {}`,
		"top-level list": `[{"action":"queued"}]`,
		"form encoded":   `payload=%7B%22action%22%3A%22queued%22%7D`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := github.ParseWorkflowJob([]byte(body)); !errors.Is(err, github.ErrInvalidPayload) {
				t.Fatalf("err = %v, want ErrInvalidPayload", err)
			}
		})
	}
}

func TestParsePing(t *testing.T) {
	got, err := github.ParsePing(githubtest.PingPayload(469785313, 123456))
	if err != nil {
		t.Fatal(err)
	}
	want := github.PingEvent{Zen: "Design for failure.", HookID: 469785313, AppID: 123456}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PingEvent (-want +got):\n%s", diff)
	}
	for name, body := range map[string]string{
		"no hook id":       `{"zen":"x"}`,
		"negative hook id": `{"zen":"x","hook_id":-1}`,
		"not json":         `zen`,
	} {
		if _, err := github.ParsePing([]byte(body)); !errors.Is(err, github.ErrInvalidPayload) {
			t.Errorf("%s: err = %v, want ErrInvalidPayload", name, err)
		}
	}
}

// encodeEvent writes ev back in GitHub's shape, with only the fields Nimbus
// reads.
func encodeEvent(t *testing.T, ev github.WorkflowJobEvent) []byte {
	t.Helper()
	nullIfEmpty := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	m := map[string]any{
		"action": ev.Action,
		"workflow_job": map[string]any{
			"id": ev.Job.ID, "run_id": ev.Job.RunID, "run_attempt": ev.Job.RunAttempt, "name": ev.Job.Name,
			"labels": ev.Job.Labels, "status": ev.Job.Status, "conclusion": nullIfEmpty(ev.Job.Conclusion),
			"runner_id": ev.Job.RunnerID, "runner_name": nullIfEmpty(ev.Job.RunnerName),
			"head_sha": ev.Job.HeadSHA, "head_branch": nullIfEmpty(ev.Job.HeadBranch),
			"workflow_name": nullIfEmpty(ev.Job.WorkflowName),
		},
		"repository": map[string]any{
			"id": ev.Repository.ID, "name": ev.Repository.Name, "full_name": ev.Repository.FullName,
			"private": ev.Repository.Private, "default_branch": nullIfEmpty(ev.Repository.DefaultBranch),
			"owner": map[string]any{
				"id": ev.Repository.Owner.ID, "login": ev.Repository.Owner.Login, "type": ev.Repository.Owner.Type,
			},
		},
	}
	if ev.InstallationID != 0 {
		m["installation"] = map[string]any{"id": ev.InstallationID}
	}
	if ev.Organization.ID != 0 {
		m["organization"] = map[string]any{"id": ev.Organization.ID, "login": ev.Organization.Login}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	loginRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
	shaRE   = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)
)

func FuzzParseWorkflowJob(f *testing.F) {
	for _, o := range []githubtest.WorkflowJobOptions{
		{Action: "queued", InstallationID: 1},
		{Action: "waiting", Labels: []string{}},
		{Action: "in_progress", OwnerType: "User", Owner: "alice", RunnerName: "r1"},
		{Action: "completed", Conclusion: "cancelled", OmitRunAttempt: true},
		{Action: "requested"},
	} {
		f.Add(githubtest.WorkflowJobPayload(o))
	}
	f.Add(readTestdata(f, "workflow_job_completed_2021.json"))
	f.Add(readTestdata(f, "workflow_job_queued_org.json"))
	f.Add([]byte(`{"action":"queued","workflow_job":{"id":1,"run_id":1,"name":"","status":"queued","head_sha":"0000000000000000000000000000000000000000"},"repository":{"id":1,"name":"r","full_name":"o/r","owner":{"id":1,"login":"o","type":"User"}}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := github.ParseWorkflowJob(body)
		if err != nil {
			if !errors.Is(err, github.ErrInvalidPayload) && !errors.Is(err, github.ErrUnknownAction) {
				t.Fatalf("error %v wraps neither ErrInvalidPayload nor ErrUnknownAction", err)
			}
			return
		}
		// Invariants every accepted event holds, checked independently
		// of the parser's own validation.
		switch {
		case !ev.Action.Valid():
			t.Fatalf("accepted action %q", ev.Action)
		case ev.Job.ID <= 0 || ev.Job.RunID <= 0 || ev.Job.RunAttempt <= 0:
			t.Fatalf("accepted ids job %d run %d attempt %d", ev.Job.ID, ev.Job.RunID, ev.Job.RunAttempt)
		case ev.Repository.ID <= 0 || ev.Repository.Owner.ID <= 0:
			t.Fatalf("accepted repository id %d owner id %d", ev.Repository.ID, ev.Repository.Owner.ID)
		case !loginRE.MatchString(ev.Repository.Owner.Login) || !loginRE.MatchString(ev.Repository.Name):
			t.Fatalf("accepted owner %q repo %q", ev.Repository.Owner.Login, ev.Repository.Name)
		case !strings.EqualFold(ev.Repository.FullName, ev.Repository.Owner.Login+"/"+ev.Repository.Name):
			t.Fatalf("accepted full name %q for %q/%q", ev.Repository.FullName, ev.Repository.Owner.Login, ev.Repository.Name)
		case ev.Repository.Owner.Type != "Organization" && ev.Repository.Owner.Type != "User":
			t.Fatalf("accepted owner type %q", ev.Repository.Owner.Type)
		case !shaRE.MatchString(ev.Job.HeadSHA):
			t.Fatalf("accepted head sha %q", ev.Job.HeadSHA)
		case len(ev.Job.Labels) > 100:
			t.Fatalf("accepted %d labels", len(ev.Job.Labels))
		case ev.Action == github.ActionInProgress && ev.Job.RunnerName == "":
			t.Fatalf("accepted in_progress without a runner name")
		case ev.Action == github.ActionCompleted && ev.Job.Conclusion == "":
			t.Fatalf("accepted completed without a conclusion")
		case ev.InstallationID < 0 || ev.Organization.ID < 0:
			t.Fatalf("accepted installation %d organization %d", ev.InstallationID, ev.Organization.ID)
		}
		for _, l := range ev.Job.Labels {
			if l == "" || len(l) > 256 || strings.ContainsAny(l, ",\n\r\x00") {
				t.Fatalf("accepted label %q", l)
			}
		}
		if err := github.TargetFor(ev).Validate(); err != nil {
			t.Fatalf("accepted event gives an invalid runner target: %v", err)
		}
		// Written back in GitHub's shape, it parses to the same event.
		again, err := github.ParseWorkflowJob(encodeEvent(t, ev))
		if err != nil {
			t.Fatalf("re-parse of accepted event: %v", err)
		}
		if diff := cmp.Diff(ev, again); diff != "" {
			t.Fatalf("round trip changed the event (-first +second):\n%s", diff)
		}
	})
}

func BenchmarkParseWorkflowJob(b *testing.B) {
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "completed", InstallationID: 1})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := github.ParseWorkflowJob(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWebhookPath is the work the control plane does per delivery:
// headers, signature with two secrets (mid-rotation), parse.
func BenchmarkWebhookPath(b *testing.B) {
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 1})
	secrets := [][]byte{[]byte("new-secret"), []byte("old-secret")}
	h := githubtest.DeliveryHeaders(secrets[0], "workflow_job", "72d3162e-cc78-11e3-81ab-4c9367dc0958", body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := github.DeliveryFromHeaders(h); err != nil {
				b.Fatal(err)
			}
			if err := github.VerifySignature(body, h.Get(github.SignatureHeader), secrets); err != nil {
				b.Fatal(err)
			}
			if _, err := github.ParseWorkflowJob(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
