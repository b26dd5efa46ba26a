package app_test

import (
	"context"
	"errors"
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
	nimbuslogs "github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/logs/clickhouse"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// chattyJob prints "line 0" … "line n-1", pausing a little every 200
// lines so that its output streams for a while.
func chattyJob(n int) []string {
	return []string{"sh", "-c", fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "line $i"; i=$((i+1)); [ $((i %% 200)) -eq 0 ] && sleep 0.2; done; true`, n)}
}

// jobLines reads a job's lines through the API.
func jobLines(t *testing.T, c *apiclient.Client, id string) []apiv1.LogLine {
	t.Helper()
	var out []apiv1.LogLine
	if err := c.FollowJobLines(context.Background(), id, apiclient.LineQuery{}, false, func(l apiv1.LogLine) error {
		out = append(out, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkLines says whether lines are exactly "line from" … "line to-1",
// numbered on from first.
func checkLines(lines []apiv1.LogLine, first int64, from, to int) error {
	if len(lines) != to-from {
		return fmt.Errorf("%d lines, want %d", len(lines), to-from)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("line %d", from+i); l.Text != want || l.Line != first+int64(i) {
			return fmt.Errorf("line %d: %d %q, want %d %q", i, l.Line, l.Text, first+int64(i), want)
		}
	}
	return nil
}

func until(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverProcess is `nimbus server` in its own process, so that it can be
// killed (SIGKILL: nothing gets to finish) and started again on the same
// database and address.
type serverProcess struct {
	t    *testing.T
	dir  string
	addr string
	cmd  *exec.Cmd
}

func startServerProcess(t *testing.T, dir, addr string, extra ...string) *serverProcess {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(dir, "server.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	listen := addr
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	os.Remove(filepath.Join(dir, "url"))
	cmd := exec.Command(nimbusBin, "server", "--data-dir", dir, "--listen", listen, "--cache-grpc-listen", "",
		"--github-redeliver-interval", "0", "--lease-ttl", "30s")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &serverProcess{t: t, dir: dir, cmd: cmd}
	t.Cleanup(func() { s.kill() })
	until(t, 30*time.Second, "server up", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "url"))
		if err != nil {
			return false
		}
		resp, err := http.Get(strings.TrimSpace(string(b)) + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		s.addr = strings.TrimPrefix(strings.TrimSpace(string(b)), "http://")
		return true
	})
	return s
}

func (s *serverProcess) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.cmd.Wait()
	}
}

// The server is killed (SIGKILL) while a job streams its output, and
// started again: the agent keeps the output in its spool meanwhile and
// sends it when the server is back. Every line is stored once, in order:
// none lost, none doubled.
func TestE2ELogsSurviveServerKill(t *testing.T) {
	needSandbox(t)
	t.Run("sqlite", func(t *testing.T) { testLogsSurviveServerKill(t) })
	t.Run("clickhouse", func(t *testing.T) { testLogsSurviveServerKill(t, "--log-store", clickhouseDB(t)) })
}

// clickhouseDB is the URL of a throwaway ClickHouse database for a log
// store (NIMBUS_TEST_CLICKHOUSE's server), dropped when the test ends.
func clickhouseDB(t *testing.T) string {
	t.Helper()
	url := fmt.Sprintf("%s/nimbus_e2e_%d", testenv.ClickHouseURL(t), time.Now().UnixNano())
	t.Cleanup(func() {
		if s, err := clickhouse.Open(context.Background(), url, clickhouse.Options{}); err == nil {
			s.DropDatabase(context.Background())
		}
	})
	return url
}

func testLogsSurviveServerKill(t *testing.T, extra ...string) {
	dir := t.TempDir()
	srv := startServerProcess(t, dir, "", extra...)
	url := "http://" + srv.addr
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	owner := apiclient.New(url, strings.TrimSpace(string(tok)))
	ctx := context.Background()
	jt, err := owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	ac := app.AgentConfig{Server: url, JoinToken: jt.Token, StateDir: state, WorkDir: apptest.SharedDir(t, "work"),
		Name: "survivor", MaxJobs: 1, UIDBase: 130000, Labels: []string{"linux"}, LogLevel: "info", LogFormat: "text"}
	if err := ac.Validate(true); err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	a, err := app.NewAgent(actx, ac, apptest.Logger(t))
	if err != nil {
		stop()
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(actx) }()
	t.Cleanup(func() {
		stop()
		if err := <-agentDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
	})
	const n = 3000
	j, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: chattyJob(n), Labels: []string{"linux"}, TimeoutSeconds: 120})
	if err != nil {
		t.Fatal(err)
	}
	until(t, 60*time.Second, "output before the kill", func() bool {
		res, err := owner.SearchLogs(ctx, apiclient.LogSearchQuery{Pattern: `^line 400$`, Job: j.ID, Since: "1h"})
		return err == nil && len(res.Lines) == 1
	})
	srv.kill()
	// The job writes on; its output waits in the agent's spool.
	spool := filepath.Join(state, "log-spool", j.ID+"-1")
	until(t, 20*time.Second, "output spooled while the server is down", func() bool {
		es, _ := os.ReadDir(spool)
		for _, e := range es {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				return true
			}
		}
		return false
	})
	startServerProcess(t, dir, srv.addr, extra...)
	until(t, 90*time.Second, "job finished", func() bool {
		got, err := owner.GetJob(ctx, j.ID)
		return err == nil && (got.State == "succeeded" || got.State == "failed")
	})
	if got, _ := owner.GetJob(ctx, j.ID); got.State != "succeeded" || got.Fence != 1 {
		t.Fatalf("job %s fence %d (%s), want succeeded on its first lease", got.State, got.Fence, got.Reason)
	}
	if err := checkLines(jobLines(t, owner, j.ID), 1, 0, n); err != nil {
		t.Error(err)
	}
}

// An agent killed (SIGKILL) while its job streams: what the server
// acknowledged of that attempt stays, in order and once; the rerun on
// another agent adds its whole output after it, numbered on.
func TestE2ELogsAgentKilledMidStream(t *testing.T) {
	needSandbox(t)
	// A lease of 6 s (renewed every 2 s): short enough that the killed
	// agent's expires soon, long enough that the rescuer's survives a
	// renewal delayed by a busy machine under -race (at 3 s it expired
	// at load ~7).
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.LeaseTTL = 6 * time.Second })
	first, _ := runAgentProcess(t, h, "doomed")
	const n = 2000
	id := submit(t, h, chattyJob(n)...)
	until(t, 60*time.Second, "output before the kill", func() bool { return len(jobLines(t, h.Owner(), id)) >= 300 })
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	h.StartAgent(t, "rescuer", func(c *app.AgentConfig) { c.JoinToken, c.Labels = h.JoinToken("linux"), []string{"linux"} })
	j := waitJob(t, h, id, 90*time.Second, finished)
	if j.State != "succeeded" || j.Fence != 2 {
		t.Fatalf("after the rerun: %s, fence %d", j.State, j.Fence)
	}
	lines := jobLines(t, h.Owner(), id)
	k := 0 // lines of the first attempt
	for k < len(lines) && (k == 0 || lines[k].Text != "line 0") {
		k++
	}
	if k < 300 || k >= len(lines) {
		t.Fatalf("%d lines; the rerun's first at %d", len(lines), k)
	}
	// The first attempt's last line may have been cut where its last
	// acknowledged chunk ended.
	if err := checkLines(lines[:k-1], 1, 0, k-1); err != nil {
		t.Errorf("first attempt: %v", err)
	}
	if last := lines[k-1].Text; !strings.HasPrefix(fmt.Sprintf("line %d", k-1), last) || last == "" {
		t.Errorf("first attempt's last line %q, want a start of %q", last, fmt.Sprintf("line %d", k-1))
	}
	if err := checkLines(lines[k:], int64(k+1), 0, n); err != nil {
		t.Errorf("the rerun: %v", err)
	}
}

// What the job was given to keep secret (its cache token) is masked in
// its stored output, by the agent, before it leaves the host.
func TestE2ELogSecretsMasked(t *testing.T) {
	needSandbox(t)
	h := apptest.Start(t, "sqlite")
	h.StartAgent(t, "masker", nil)
	id := submit(t, h, "sh", "-c", `echo "token=$NIMBUS_CACHE_TOKEN"; printf '%s' "$NIMBUS_CACHE_TOKEN" | rev; echo`)
	if j := waitJob(t, h, id, 60*time.Second, finished); j.State != "succeeded" {
		t.Fatalf("job %s: %s", j.State, j.Reason)
	}
	out := logs(t, h, id)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "token=***" {
		t.Fatalf("output %q, want the token masked", out)
	}
	// The job had the token: reversed, it is not masked (masking is of
	// the value as given), and gives it back.
	r := []rune(lines[1])
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	token := string(r)
	if len(token) < 20 || strings.Contains(out, token) {
		t.Errorf("the token (%d bytes) in the stored output", len(token))
	}
	res, err := h.Owner().SearchLogs(context.Background(), apiclient.LogSearchQuery{Pattern: regexpQuote(token[:20]), Since: "1h"})
	if err != nil || len(res.Lines) != 0 {
		t.Errorf("search for the token: %+v, %v", res, err)
	}
}

func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// A job that floods its output (`yes`) hits its limit at a line
// boundary and ends with the notice, while another job's log beside it is
// whole.
func TestE2ELogFloodHitsItsLimit(t *testing.T) {
	needSandbox(t)
	const limit = 64 << 10
	// A long lease: under the race detector on two cores, the flood and
	// the checker leave the agent's renewals little CPU.
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.MaxLogBytes, c.LeaseTTL = limit, 30*time.Second })
	h.StartAgent(t, "flooded", func(c *app.AgentConfig) { c.MaxJobs = 2 })
	flood := submit(t, h, "sh", "-c", "yes | head -c 20000000; echo done")
	quiet := submit(t, h, chattyJob(1000)...)
	for _, id := range []string{flood, quiet} {
		if j := waitJob(t, h, id, 120*time.Second, finished); j.State != "succeeded" {
			t.Fatalf("job %s: %s %q", id, j.State, j.Reason)
		}
	}
	if err := checkLines(jobLines(t, h.Owner(), quiet), 1, 0, 1000); err != nil {
		t.Errorf("the quiet job: %v", err)
	}
	lines := jobLines(t, h.Owner(), flood)
	if len(lines) != limit/2+1 {
		t.Errorf("%d lines of the flood, want %d whole lines and the notice", len(lines), limit/2)
	}
	for i, l := range lines[:len(lines)-1] {
		if l.Text != "y" {
			t.Fatalf("flood line %d: %q", i+1, l.Text)
		}
	}
	if last := lines[len(lines)-1]; last.Text != nimbuslogs.Notice(limit) || last.Stream != "nimbus" {
		t.Errorf("last line %+v", last)
	}
	raw := logs(t, h, flood)
	if want := strings.Repeat("y\n", limit/2) + nimbuslogs.Notice(limit) + "\n"; raw != want {
		t.Errorf("raw flood output: %d bytes, want %d", len(raw), len(want))
	}
}

// The log pipeline on ClickHouse, end to end: a sandboxed job's output is
// read back raw and by line, and found by search, through the API.
func TestE2ELogsOnClickHouse(t *testing.T) {
	needSandbox(t)
	url := clickhouseDB(t)
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.LogStore = url })
	h.StartAgent(t, "ch", nil)
	id := submit(t, h, "sh", "-c", `echo "::group::Build"; echo "error: link timeout"; echo "::endgroup::"; printf "no newline"`)
	if j := waitJob(t, h, id, 60*time.Second, finished); j.State != "succeeded" {
		t.Fatalf("job: %s %q", j.State, j.Reason)
	}
	if out := logs(t, h, id); out != "::group::Build\nerror: link timeout\n::endgroup::\nno newline" {
		t.Errorf("raw output %q", out)
	}
	lines := jobLines(t, h.Owner(), id)
	if len(lines) != 4 || lines[1].Step != "Build" || lines[3].Text != "no newline" {
		t.Errorf("lines %+v", lines)
	}
	res, err := h.Owner().SearchLogs(context.Background(), apiclient.LogSearchQuery{Pattern: "error: .*timeout", Since: "1h"})
	if err != nil || len(res.Lines) != 1 || res.Lines[0].Job != id || res.Lines[0].Line != 2 {
		t.Errorf("search: %+v, %v", res, err)
	}
}
