package ctl_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/ctl"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

type result struct {
	code           int
	stdout, stderr string
}

func run(h *apptest.Harness, interrupts chan os.Signal, args ...string) result {
	var out, errb testenv.Buffer
	env := func(k string) string { return "" }
	full := append([]string{"--data-dir", h.Config.DataDir}, args...)
	code := ctl.Main(context.Background(), full, &out, &errb, env, interrupts)
	return result{code, out.String(), errb.String()}
}

// `nimbus ctl run` streams the output and exits with the job's code.
func TestRun(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	h.StartAgent(t, "ctl-test", nil)
	r := run(h, nil, "run", "--env", "GREETING=hi", "--", "sh", "-c", `echo "$GREETING"; echo oops >&2; exit 3`)
	if r.code != 3 || r.stdout != "hi\noops\n" || !strings.Contains(r.stderr, "queued") {
		t.Errorf("run: %+v", r)
	}
	if r := run(h, nil, "run", "--", "true"); r.code != 0 {
		t.Errorf("run true: %+v", r)
	}
	if r := run(h, nil, "run", "--timeout", "1s", "--", "sleep", "30"); r.code != 1 || !strings.Contains(r.stderr, "timed out") {
		t.Errorf("run with a timeout: %+v", r)
	}
}

// Ctrl-C while a job runs cancels it; the command exits 130.
func TestRunInterrupt(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	h.StartAgent(t, "ctl-test", nil)
	interrupts := make(chan os.Signal, 2)
	var out, errb testenv.Buffer
	done := make(chan int, 1)
	go func() {
		done <- ctl.Main(context.Background(), []string{"--data-dir", h.Config.DataDir, "run", "--", "sh", "-c", "echo started; sleep 60"},
			&out, &errb, func(string) string { return "" }, interrupts)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "started") {
		if time.Now().After(deadline) {
			t.Fatalf("job never started: %q %q", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	interrupts <- os.Interrupt
	select {
	case code := <-done:
		if code != 130 || !strings.Contains(errb.String(), "cancelled") {
			t.Errorf("exit %d, stderr %q", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ctl run did not end within 20s of Ctrl-C")
	}
	r := run(h, nil, "jobs", "list", "--state", "cancelled")
	if r.code != 0 || !strings.Contains(r.stdout, "cancelled") {
		t.Errorf("jobs list: %+v", r)
	}
}

// The administrative commands, end to end against a real server.
func TestCommands(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	steps := []struct {
		args []string
		want string // in stdout
	}{
		{[]string{"whoami"}, "role owner"},
		{[]string{"run", "--detach", "--", "echo", "x"}, "job_"},
		{[]string{"jobs", "list"}, "echo x"},
		{[]string{"tokens", "create", "--name", "ci-bot", "--role", "ci"}, "nmbu_"},
		{[]string{"tokens", "list"}, "ci-bot"},
		{[]string{"agents", "join-token", "--labels", "linux,x64"}, "nmbj_"},
		{[]string{"agents", "list"}, "ID"},
		{[]string{"orgs", "create", "acme", "--github-login", "acme-gh", "--github-id", "42"}, "nmbu_"},
		{[]string{"orgs", "list"}, "acme-gh (42)"},
		{[]string{"cache", "trust"}, "refs/heads/*, refs/tags/*"},
		{[]string{"cache", "trust", "--untrusted-refs", "refs/heads/exp/*", "--ac-write-refs", "refs/heads/main"}, "refs/heads/exp/*"},
		{[]string{"cache", "trust"}, "Refs that write the action cache:   refs/heads/main"},
		{[]string{"audit", "--limit", "5"}, "cache.trust_changed"},
		{[]string{"keys", "list"}, "active (signs)"},
		{[]string{"keys", "rotate"}, "verifies until"},
		{[]string{"webhook-secrets", "rotate"}, ""},
		{[]string{"webhook-secrets", "retire"}, "1 webhook secret accepted"},
		{[]string{"--json", "whoami"}, `"role": "owner"`},
	}
	var jobID string
	for _, s := range steps {
		r := run(h, nil, s.args...)
		if r.code != 0 || !strings.Contains(r.stdout, s.want) {
			t.Errorf("%v: %+v", s.args, r)
		}
		if s.args[0] == "run" {
			jobID = strings.TrimSpace(r.stdout)
		}
	}
	if r := run(h, nil, "jobs", "show", jobID); r.code != 0 || !strings.Contains(r.stdout, "State:") {
		t.Errorf("jobs show: %+v", r)
	}
	if r := run(h, nil, "jobs", "cancel", jobID); r.code != 0 || !strings.Contains(r.stdout, "cancelled") {
		t.Errorf("jobs cancel: %+v", r)
	}
	if r := run(h, nil, "logs", jobID); r.code != 0 {
		t.Errorf("logs: %+v", r)
	}
}

// Mistakes get a precise message and the right exit code.
func TestErrors(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"jobs", "show"}, 2, "want exactly one job id"},
		{[]string{"run"}, 2, "no command"},
		{[]string{"agents", "join-token"}, 2, "--labels is required"},
		{[]string{"jobs", "show", "job_nope"}, 1, "not found"},
		{[]string{"tokens", "create", "--name", "x", "--role", "king"}, 1, "role"},
		{[]string{"--token", "nmbu_wrong", "whoami"}, 1, "unknown token"},
		{[]string{"--server", "http://127.0.0.1:1", "whoami"}, 1, "connect"},
	} {
		r := run(h, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	var out, errb testenv.Buffer
	code := ctl.Main(context.Background(), []string{"--data-dir", t.TempDir(), "whoami"}, &out, &errb, func(string) string { return "" }, nil)
	if code != 1 || !strings.Contains(errb.String(), "no server") {
		t.Errorf("no server: %d %q", code, errb.String())
	}
}

// Against a server with --tls-auto, ctl finds the server's CA in its data
// dir; without it the server's certificate is refused.
func TestHTTPS(t *testing.T) {
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.TLSAuto = true })
	if !strings.HasPrefix(h.URL, "https://") {
		t.Fatalf("URL %s", h.URL)
	}
	if r := run(h, nil, "whoami"); r.code != 0 || !strings.Contains(r.stdout, "role owner") {
		t.Errorf("whoami over HTTPS: %+v", r)
	}
	if r := run(h, nil, "--server", h.URL, "--ca-file", "/etc/ssl/certs/ca-certificates.crt", "whoami"); r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("whoami trusting only the system roots: %+v", r)
	}
}

// `nimbus ctl logs` reads a job's lines by step and pattern, and `logs
// search` finds lines across the org's jobs.
func TestLogsCommands(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	h.StartAgent(t, "ctl-test", nil)
	script := `echo start; echo "::group::Build"; printf '\033[31merror: link timeout\033[0m\n'; echo "::endgroup::"; echo "error: other"; printf done`
	r := run(h, nil, "run", "--", "sh", "-c", script)
	if r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	r = run(h, nil, "--json", "jobs", "list")
	id := r.stdout[strings.Index(r.stdout, "job_"):]
	id = id[:strings.IndexAny(id, `"`)]
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", "--step", "Build", id}, "::group::Build\n\x1b[31merror: link timeout\x1b[0m\n::endgroup::\n"},
		{[]string{"logs", "--grep", "error: .*timeout$", id}, "     3  \x1b[31merror: link timeout\x1b[0m\n"},
		{[]string{"logs", "--from-line", "5", "-n", id}, "     5  error: other\n     6  done\n"},
		{[]string{"logs", id}, "start\n::group::Build\n\x1b[31merror: link timeout\x1b[0m\n::endgroup::\nerror: other\ndone"},
	} {
		if r := run(h, nil, tc.args...); r.code != 0 || r.stdout != tc.want {
			t.Errorf("%v: %+v, want stdout %q", tc.args, r, tc.want)
		}
	}
	r = run(h, nil, "logs", "search", "error: .*", "--since", "1h")
	if r.code != 0 || !strings.HasPrefix(r.stdout, id+":5 error: other\n"+id+":3 [Build] error: link timeout\n") || !strings.Contains(r.stdout, "2 matching lines in 1 jobs") {
		t.Errorf("logs search: %+v", r)
	}
	if r := run(h, nil, "logs", "search", "(", "--since", "1h"); r.code != 2 || !strings.Contains(r.stderr, "pattern") {
		t.Errorf("a bad pattern: %+v", r)
	}
	if r := run(h, nil, "logs", "search", "x", "--since", "1000d"); r.code != 1 || !strings.Contains(r.stderr, "92 days") {
		t.Errorf("a range too long: %+v", r)
	}
}
