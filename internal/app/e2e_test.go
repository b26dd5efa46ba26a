package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// nimbusBin is the nimbus binary built once for the tests that run agents
// as separate processes (so they can be killed like real ones).
var nimbusBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nimbus-e2e-bin")
	if err != nil {
		panic(err)
	}
	nimbusBin = filepath.Join(dir, "nimbus")
	out, err := exec.Command("go", "build", "-o", nimbusBin, "github.com/nimbus-build/nimbus/cmd/nimbus").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build nimbus: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needSandbox(t *testing.T) {
	t.Helper()
	testenv.NeedCommand(t, "bwrap", "apt-get install bubblewrap")
}

func submit(t *testing.T, h *apptest.Harness, argv ...string) string {
	t.Helper()
	var j apiv1.Job
	if _, err := h.Owner().Do(context.Background(), "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: argv, TimeoutSeconds: 120}, &j); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func getJob(t *testing.T, c *apiclient.Client, id string) apiv1.Job {
	t.Helper()
	var j apiv1.Job
	if _, err := c.Do(context.Background(), "GET", "/api/v1/jobs/"+id, nil, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// waitJob polls until the job satisfies cond.
func waitJob(t *testing.T, h *apptest.Harness, id string, within time.Duration, cond func(apiv1.Job) bool) apiv1.Job {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		j := getJob(t, h.Owner(), id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met within %v; last: state %s reason %q", id, within, j.State, j.Reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func finished(j apiv1.Job) bool {
	return j.State == "succeeded" || j.State == "failed" || j.State == "cancelled"
}

func logs(t *testing.T, h *apptest.Harness, id string) string {
	t.Helper()
	resp, err := h.Owner().Raw(context.Background(), "GET", "/api/v1/jobs/"+id+"/logs", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// The fake GitHub runner: it decodes its JIT config like the real one
// reads it, prints who it is and exits 0, as an ephemeral runner does
// after its one job.
const fakeRunner = `#!/bin/sh
set -e
[ "$1" = "--jitconfig" ] || { echo "usage: run.sh --jitconfig CONFIG" >&2; exit 2; }
name=$(printf '%s' "$2" | base64 -d | sed -n 's/.*"runner_name":"\([^"]*\)".*/\1/p')
echo "runner $name listening for jobs"
echo "uid $(id -u) in $(pwd)"
mkdir -p _diag && echo ok > _diag/Runner.log
echo "job done"
`

// Signed webhook → job → JIT config minted with the GitHub App → fake
// runner in bubblewrap → logs → succeeded, on both engines.
func TestE2EWebhookToRunner(t *testing.T) {
	needSandbox(t)
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			gh, keyFile := githubEmulator(t)
			h := apptest.Start(t, engine, func(c *app.ServerConfig) {
				c.GitHubAppID, c.GitHubAppKeyFile, c.GitHubAPIURL = 777, keyFile, gh.URL
			})
			if _, err := h.Owner().Do(ctx, "POST", "/api/v1/orgs/"+h.OrgID+"/github", apiv1.CreateOrg{GitHubLogin: "octo-org", GitHubID: 6811672}, nil); err != nil {
				t.Fatal(err)
			}
			runnerDir := apptest.SharedDir(t, "runner")
			os.WriteFile(filepath.Join(runnerDir, "run.sh"), []byte(fakeRunner), 0o755)
			h.StartAgent(t, "gh-agent", func(c *app.AgentConfig) { c.RunnerDir = runnerDir })

			body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 4242,
				Labels: []string{"self-hosted", "nimbus"}})
			resp, err := githubtest.Deliver(ctx, nil, h.URL+"/webhooks/github", []byte(h.WebhookSecret), "workflow_job", "e2e-1", body)
			if err != nil {
				t.Fatal(err)
			}
			var res apiv1.WebhookResult
			json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			if res.Outcome != "created" {
				t.Fatalf("webhook: %d %+v", resp.StatusCode, res)
			}
			j := waitJob(t, h, res.JobID, 60*time.Second, finished)
			out := logs(t, h, j.ID)
			if j.State != "succeeded" {
				t.Fatalf("job %s: %s (%s); output:\n%s", j.ID, j.State, j.Reason, out)
			}
			runner := j.GitHub.NimbusRunner
			if runner == "" || !strings.Contains(out, "runner "+runner+" listening") || !strings.Contains(out, "job done") {
				t.Errorf("runner %q; output:\n%s", runner, out)
			}
			if strings.Contains(out, "uid 0 ") {
				t.Errorf("runner ran as root:\n%s", out)
			}
			runners := gh.Runners()
			if len(runners) != 1 || runners[0].Name != runner || runners[0].Org != "octo-org" ||
				strings.Join(runners[0].Labels, ",") != "nimbus,self-hosted" {
				t.Errorf("runners registered on GitHub: %+v", runners)
			}
			// The fake runner does not deregister itself as the real one
			// does after its job: Nimbus removes it once the lease ends.
			waitFor(t, 10*time.Second, func() bool { rs := gh.Runners(); return len(rs) == 1 && rs[0].Deleted })
			for _, r := range gh.Requests() {
				if strings.Contains(r.Path, "registration-token") {
					t.Errorf("a registration token was requested: %+v", r)
				}
			}
			// GitHub reports the runner took the job; then completed.
			for i, action := range []string{"in_progress", "completed"} {
				body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: action, InstallationID: 4242,
					Labels: []string{"self-hosted", "nimbus"}, RunnerName: runner})
				resp, err := githubtest.Deliver(ctx, nil, h.URL+"/webhooks/github", []byte(h.WebhookSecret), "workflow_job", fmt.Sprint("e2e-", i+2), body)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			j = getJob(t, h.Owner(), j.ID)
			if j.GitHub.Status != "completed" || j.GitHub.RunnerName != runner || j.State != "succeeded" {
				t.Errorf("after GitHub's reports: %s %+v", j.State, j.GitHub)
			}
		})
	}
}

// githubEmulator starts a GitHub API emulator with App 777 installed (4242)
// on the org octo-org (id 6811672), and writes the App's key to a file.
func githubEmulator(t *testing.T) (*githubtest.Server, string) {
	t.Helper()
	gh := githubtest.NewServer(t, githubtest.Config{})
	key := githubtest.SharedKey(t)
	gh.AddApp(githubtest.App{ID: 777, PublicKey: &key.PublicKey})
	gh.AddInstallation(githubtest.Installation{ID: 4242, AppID: 777, Account: "octo-org", AccountID: 6811672, AccountType: "Organization"})
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, githubtest.PKCS1PEM(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return gh, keyFile
}

// runAgentProcess starts `nimbus agent` as its own process.
func runAgentProcess(t *testing.T, h *apptest.Harness, name string) (*exec.Cmd, string) {
	t.Helper()
	state := t.TempDir()
	work := apptest.SharedDir(t, "work")
	cmd := exec.Command(nimbusBin, "agent", "--server", h.URL, "--join-token", h.JoinToken("linux"), "--state-dir", state,
		"--work-dir", work, "--agent-name", name, "--labels", "linux", "--max-jobs", "1", "--sandbox-uid-base", "120000")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		// What the next agent on this work dir would sweep: a killed
		// agent's mounts and cgroups.
		if ex, err := bwrap.New(bwrap.Options{WorkRoot: filepath.Join(work, "jobs")}); err == nil {
			ex.Close()
		}
	})
	return cmd, state
}

// An agent killed mid-job: its lease expires, the job reruns on another
// agent under a higher fence, and the dead agent's late reports are refused.
// The lease is 6 s (renewed every 2 s): at 3 s, the rescuer's could expire
// when renewals are delayed on a loaded machine under -race, as it did in
// the agent-killed log e2e.
func TestE2EAgentKilledMidJob(t *testing.T) {
	needSandbox(t)
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			h := apptest.Start(t, engine, func(c *app.ServerConfig) { c.LeaseTTL = 6 * time.Second })
			first, state := runAgentProcess(t, h, "doomed")
			id := submit(t, h, "sh", "-c", "echo started; sleep 3; echo finished")
			j := waitJob(t, h, id, 30*time.Second, func(j apiv1.Job) bool { return j.State == "running" && j.Fence == 1 })
			waitFor(t, 10*time.Second, func() bool { return strings.Contains(logs(t, h, id), "started") })
			if err := first.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			first.Wait()
			h.StartAgent(t, "rescuer", func(c *app.AgentConfig) {
				c.JoinToken, c.Labels = h.JoinToken("linux"), []string{"linux"}
			})
			j = waitJob(t, h, id, 60*time.Second, finished)
			if j.State != "succeeded" || j.Fence != 2 || j.Attempt != 1 {
				t.Fatalf("after the rerun: state %s fence %d attempt %d reason %q", j.State, j.Fence, j.Attempt, j.Reason)
			}
			// The killed agent's credential still authenticates, but its
			// lease is gone: every report under fence 1 is refused.
			var cred struct {
				Credential string `json:"credential"`
			}
			b, err := os.ReadFile(filepath.Join(state, "credential.json"))
			if err != nil {
				t.Fatal(err)
			}
			json.Unmarshal(b, &cred)
			stale := h.Client(cred.Credential)
			for op, body := range map[string]any{
				"complete": apiv1.Complete{Fence: 1, State: "failed"},
				"logs":     apiv1.Logs{Fence: 1, Chunks: []apiv1.LogChunk{{Seq: 99, Data: []byte("forged")}}},
				"start":    apiv1.Fenced{Fence: 1},
			} {
				_, err := stale.Do(ctx, "POST", apiv1.PathAgentJob(id, op), body, nil)
				if !apiclient.IsStatus(err, http.StatusConflict) {
					t.Errorf("stale %s: %v, want 409", op, err)
				}
			}
			if out := logs(t, h, id); strings.Contains(out, "forged") || strings.Count(out, "started") != 2 || !strings.Contains(out, "finished") {
				t.Errorf("output of both attempts:\n%s", out)
			}
			if got := getJob(t, h.Owner(), id); got.State != "succeeded" {
				t.Errorf("a stale report changed the job: %s", got.State)
			}
		})
	}
}

// Jobs queued when the server restarts are all run afterwards.
func TestE2ERestartLosesNothing(t *testing.T) {
	needSandbox(t)
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			h := apptest.Start(t, engine)
			var ids []string
			for i := range 5 {
				ids = append(ids, submit(t, h, "sh", "-c", fmt.Sprintf("echo job %d", i)))
			}
			h.Restart()
			h.StartAgent(t, "after-restart", nil)
			for i, id := range ids {
				j := waitJob(t, h, id, 60*time.Second, finished)
				if j.State != "succeeded" {
					t.Errorf("job %d: %s %q", i, j.State, j.Reason)
				}
				if out := logs(t, h, id); out != fmt.Sprintf("job %d\n", i) {
					t.Errorf("job %d output %q", i, out)
				}
			}
		})
	}
}

func waitFor(t *testing.T, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
