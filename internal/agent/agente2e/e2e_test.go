// Package agente2e runs the real agent against the real control plane
// (internal/app, SQLite) and real bubblewrap: the check that both sides
// of the agent API agree.
package agente2e

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/agent"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

const waitLimit = 60 * time.Second

func newBwrap(t *testing.T) *bwrap.Executor {
	t.Helper()
	if _, err := os.Stat(bwrap.DefaultBwrapPath); err != nil {
		testenv.Missing(t, "bubblewrap is not installed at %s (apt-get install bubblewrap)", bwrap.DefaultBwrapPath)
	}
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	opts := bwrap.Options{WorkRoot: filepath.Join(dir, "work"), UIDBase: 250000}
	if err := bwrap.Check(t.Context(), opts, executor.Limits{}); err != nil {
		testenv.Missing(t, "bubblewrap cannot create sandboxes here: %v", err)
	}
	e, err := bwrap.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// waitJob polls the job until cond holds.
func waitJob(t *testing.T, h *apptest.Harness, id string, cond func(apiv1.Job) bool) apiv1.Job {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		var j apiv1.Job
		if _, err := h.Owner().Do(t.Context(), http.MethodGet, "/api/v1/jobs/"+id, nil, &j); err != nil {
			t.Fatal(err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %+v after %v", id, j, waitLimit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAgentAgainstRealControlPlane(t *testing.T) {
	e := newBwrap(t)
	// Leases of 10 s: a race-enabled run on two busy cores writes a flood
	// of lines (and renews between its writes) ten times slower than
	// `nimbus up` does.
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.LeaseTTL = 10 * time.Second })
	owner := h.Owner()
	var jt apiv1.JoinToken
	if _, err := owner.Do(t.Context(), http.MethodPost, "/api/v1/agents/join-tokens", apiv1.CreateJoinToken{Labels: []string{"linux", "x64"}}, &jt); err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Server: h.URL, StateDir: filepath.Join(t.TempDir(), "state"), JoinToken: jt.Token,
		Name: "e2e", Labels: []string{"linux"}, MaxJobs: 2, Executor: e,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), MaxBackoff: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		runErr = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})

	submit := func(s apiv1.SubmitJob) string {
		var j apiv1.Job
		if _, err := owner.Do(t.Context(), http.MethodPost, "/api/v1/jobs", s, &j); err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	ok := submit(apiv1.SubmitJob{Argv: []string{"sh", "-c", "seq 1 20000; exit 3"}, Labels: []string{"linux"}})
	long := submit(apiv1.SubmitJob{Argv: []string{"sh", "-c", "echo up; exec sleep 1000"}, Labels: []string{"linux"}})

	j := waitJob(t, h, ok, func(j apiv1.Job) bool { return j.FinishedAt != (time.Time{}) })
	if j.State != "failed" || j.ExitCode == nil || *j.ExitCode != 3 {
		t.Errorf("job %+v; want failed with exit code 3", j)
	}
	resp, err := owner.Raw(t.Context(), http.MethodGet, "/api/v1/jobs/"+ok+"/logs", nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(out) != 108894 {
		t.Errorf("log of %d bytes, want 108894", len(out))
	}

	waitJob(t, h, long, func(j apiv1.Job) bool { return j.State == "running" })
	// Heartbeats keep the lease past several of its ttls.
	time.Sleep(3 * h.Config.LeaseTTL)
	if j := waitJob(t, h, long, func(apiv1.Job) bool { return true }); j.State != "running" || j.Fence != 1 {
		t.Errorf("after 3 lease ttls, job %s with fence %d; want still running under its first lease", j.State, j.Fence)
	}
	if _, err := owner.Do(t.Context(), http.MethodPost, "/api/v1/jobs/"+long+"/cancel", nil, nil); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, h, long, func(j apiv1.Job) bool { return j.FinishedAt != (time.Time{}) })
	if j.State != "cancelled" {
		t.Errorf("cancelled job %+v", j)
	}
	a.GracefulStop()
	select {
	case <-finished:
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after GracefulStop")
	}
}
