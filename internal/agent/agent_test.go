package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// Tests in this file drive a real agent against the fake control plane
// over HTTP, with real bubblewrap sandboxes.

func TestJobOutcomes(t *testing.T) {
	t.Parallel()
	e, _ := newBwrap(t)
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, e)
	cfg.MaxJobs = 5
	type want struct {
		complete apiv1.Complete
		output   string
	}
	jobs := map[string]struct {
		spec fakeJobSpec
		want want
	}{
		"exit 0": {
			spec: fakeJobSpec{argv: sh("echo hello")},
			want: want{apiv1.Complete{Fence: 1, State: "succeeded", ExitCode: new(0)}, "hello\n"},
		},
		"exit 3": {
			spec: fakeJobSpec{argv: sh("echo failing >&2; exit 3")},
			want: want{apiv1.Complete{Fence: 1, State: "failed", ExitCode: new(3), Reason: "exit status 3"}, "failing\n"},
		},
		"command not found": {
			spec: fakeJobSpec{argv: sh("no-such-command 2>/dev/null")},
			want: want{apiv1.Complete{Fence: 1, State: "failed", ExitCode: new(127), Reason: "exit status 127"}, ""},
		},
		"timeout": {
			spec: fakeJobSpec{argv: sh("echo waiting; exec sleep 100"), timeout: 1},
			want: want{apiv1.Complete{Fence: 1, State: "failed", Reason: "timed out after 1s"}, "waiting\n"},
		},
		"environment": {
			spec: fakeJobSpec{
				argv:     sh(`echo "$NIMBUS_JOB_ID|$CI|$A|$B"`),
				env:      map[string]string{"A": "job", "B": "job", "CI": "false"},
				leaseEnv: map[string]string{"B": "lease"},
			},
			want: want{apiv1.Complete{Fence: 1, State: "succeeded", ExitCode: new(0)}, "ID|true|job|lease\n"},
		},
	}
	ids := map[string]string{}
	for name, j := range jobs {
		ids[name] = f.enqueue(j.spec)
	}
	startAgent(t, cfg)
	for name, j := range jobs {
		id := ids[name]
		v := f.waitFinished(t, id)
		got := want{v.Completes[0], ""}
		got.output, _ = f.output(id, 1)
		j.want.output = strings.ReplaceAll(j.want.output, "ID", id)
		if diff := cmp.Diff(j.want, got, cmp.AllowUnexported(want{})); diff != "" {
			t.Errorf("%s: completion and output (-want +got):\n%s", name, diff)
		}
		if len(v.Completes) != 1 {
			t.Errorf("%s: %d completions, want 1", name, len(v.Completes))
		}
	}
	f.checkNoViolations(t)
}

// TestJobOverItsLimitsIsReported runs jobs past the agent's memory and disk
// limits: each is stopped and reported with the limit it went over.
func TestJobOverItsLimitsIsReported(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "job limits need root")
	}
	e, _ := newBwrap(t)
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, e)
	cfg.MaxJobs = 2
	cfg.JobLimits = executor.Limits{Memory: 64 << 20, Disk: executor.MinDisk}
	jobs := map[string]string{
		"memory": "tail /dev/zero", // keeps one endless line in memory
		"disk":   "head -c 200M /dev/zero > big; exec sleep 100",
	}
	ids := map[string]string{}
	for name, script := range jobs {
		ids[name] = f.enqueue(fakeJobSpec{argv: sh(script)})
	}
	startAgent(t, cfg)
	for name, id := range ids {
		got := f.waitFinished(t, id).Completes[0]
		want := apiv1.Complete{Fence: 1, State: "failed", Reason: name + " limit 64 MiB exceeded"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: completion (-want +got):\n%s", name, diff)
		}
	}
	f.checkNoViolations(t)
}

func TestOutputArrivesCompleteAndInOrderDespiteFailedUploads(t *testing.T) {
	t.Parallel()
	e, _ := newBwrap(t)
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, e)
	cfg.MaxChunk = 4 << 10
	cfg.FlushInterval = 20 * time.Millisecond
	// Uploads fail both ways: refused before being stored, and stored but
	// with the answer lost (the retry must then be stored once).
	f.failNext("logs",
		fault{status: 500}, fault{status: 500, applied: true}, fault{status: 503},
		fault{status: 500, applied: true}, fault{status: 502}, fault{status: 500, applied: true})
	// Output in bursts, so that it is cut both by size and by the flush
	// interval.
	// 1.3 MB: more than one upload can carry.
	id := f.enqueue(fakeJobSpec{argv: sh(`for i in $(seq 1 100); do seq $((i*2000)) $((i*2000+1999)); sleep 0.01; done`)})
	startAgent(t, cfg)

	v := f.waitFinished(t, id)
	if diff := cmp.Diff([]apiv1.Complete{{Fence: 1, State: "succeeded", ExitCode: new(0)}}, v.Completes); diff != "" {
		t.Errorf("completions (-want +got):\n%s", diff)
	}
	var want strings.Builder
	for i := 2000; i < 202000; i++ {
		fmt.Fprintln(&want, i)
	}
	got, whole := f.output(id, 1)
	if !whole {
		t.Error("the stored chunks have a gap")
	}
	if got != want.String() {
		t.Errorf("output: got %d bytes, want %d; first difference at byte %d", len(got), want.Len(), firstDiff(got, want.String()))
	}
	if n := f.callCount("logs"); n < 6+3 {
		t.Errorf("%d logs calls: the output should have taken at least 3 uploads besides the 6 failed ones", n)
	}
	f.checkNoViolations(t)
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestCancelStopsWorkload(t *testing.T) {
	t.Parallel()
	e, _ := newBwrap(t)
	rec := record(e)
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, rec)
	id := f.enqueue(fakeJobSpec{argv: sh("echo ready; sleep 1000 & sleep 1000")})
	startAgent(t, cfg)
	f.waitFor(t, "the job's output", func() bool { out, _ := f.output(id, 1); return out == "ready\n" })

	cancelled := time.Now()
	f.cancel(id)
	v := f.waitFinished(t, id)
	// Cancellation must reach the workload through the heartbeat's long
	// poll at once, not at the next heartbeat.
	if d := time.Since(cancelled); d > 5*time.Second {
		t.Errorf("the cancelled job was reported %v after the cancel", d)
	}
	if diff := cmp.Diff([]apiv1.Complete{{Fence: 1, State: "cancelled", Reason: "cancelled"}}, v.Completes); diff != "" {
		t.Errorf("completions (-want +got):\n%s", diff)
	}
	res := rec.results(id)
	if len(res) != 1 || !errors.Is(res[0].Cause, ErrCanceled) {
		t.Errorf("executor results %+v; want one stopped with ErrCanceled", res)
	}
	f.checkNoViolations(t)
}

func TestLostLeaseKillsWorkloadAndReportsNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ttl  time.Duration
		lose func(f *fakeControlPlane, id string)
	}{
		{"server says lost", 30 * time.Second, (*fakeControlPlane).steal},
		{"server unreachable past the ttl", 3 * time.Second, func(f *fakeControlPlane, _ string) { f.setDown(true) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, opts := newBwrap(t)
			rec := record(e)
			f := newFakeControlPlane(tt.ttl)
			cfg, logs := testConfig(t, f.serve(t), f, rec)
			id := f.enqueue(fakeJobSpec{argv: sh("echo ready; sleep 1000 & sleep 1000")})
			ra := startAgent(t, cfg)
			f.waitFor(t, "the job's output", func() bool { out, _ := f.output(id, 1); return out == "ready\n" })

			tt.lose(f, id)
			f.waitFor(t, "the workload to be killed", func() bool { return len(rec.results(id)) > 0 })
			res := rec.results(id)[0]
			if !errors.Is(res.Cause, ErrLeaseLost) {
				t.Errorf("workload stopped by %v, want ErrLeaseLost", res.Cause)
			}
			if os.Geteuid() == 0 {
				if left := processesOf(t, opts.UIDBase); len(left) > 0 {
					t.Errorf("processes of the job left running: %v", left)
				}
			}
			// Nothing is reported: the agent stops on its own (the hard
			// stop reports nothing either way), and no completion came.
			f.waitFor(t, "the job runner to end", func() bool { return strings.Contains(logs.String(), "job stopped: lease lost") })
			ra.cancel()
			ra.wait(t)
			if v := f.view(id); len(v.Completes) != 0 {
				t.Errorf("completions %+v after the lease was lost; want none", v.Completes)
			}
			f.checkNoViolations(t)
		})
	}
}

func TestCompleteIsSentOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		faults   []fault
		minCalls int
	}{
		{"first attempt refused with 500", []fault{{status: 500}}, 2},
		// The retry is refused (409 finished), or the heartbeat reports
		// the lease gone first and the agent stops retrying.
		{"first attempt applied but its answer lost", []fault{{status: 500, applied: true}}, 1},
		{"several transient failures", []fault{{status: 503}, {status: 502}, {status: 500}}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, _ := newBwrap(t)
			f := newFakeControlPlane(30 * time.Second)
			cfg, _ := testConfig(t, f.serve(t), f, e)
			f.failNext("complete", tt.faults...)
			id := f.enqueue(fakeJobSpec{argv: sh("exit 0")})
			ra := startAgent(t, cfg)
			f.waitFinished(t, id)
			// Once the agent has stopped, no retry is in flight.
			ra.GracefulStop()
			if err := ra.wait(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if v := f.view(id); len(v.Completes) != 1 || v.State != "succeeded" {
				t.Errorf("job %+v; want one completion, succeeded", v)
			}
			// A retry after an applied completion is refused: never more
			// than one call past the faults.
			if n := f.callCount("complete"); n < tt.minCalls || n > len(tt.faults)+1 {
				t.Errorf("%d complete calls; want %d to %d", n, tt.minCalls, len(tt.faults)+1)
			}
			f.checkNoViolations(t)
		})
	}
}

func TestMaxJobsRunConcurrentlyAndNoMore(t *testing.T) {
	t.Parallel()
	e, _ := newBwrap(t)
	rec := record(e)
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, rec)
	cfg.MaxJobs = 2
	var ids []string
	for range 3 {
		ids = append(ids, f.enqueue(fakeJobSpec{argv: sh("echo up; exec sleep 1000")}))
	}
	startAgent(t, cfg)
	running := func(id string) bool { return f.view(id).State == "running" }
	f.waitFor(t, "two jobs running", func() bool { return running(ids[0]) && running(ids[1]) })
	f.waitFor(t, "two workloads", func() bool { return rec.isRunning(ids[0]) && rec.isRunning(ids[1]) })
	if st := f.view(ids[2]).State; st != "queued" {
		t.Errorf("third job %s while two run; want queued", st)
	}
	// The slot of a finished job goes to the third.
	f.cancel(ids[0])
	f.waitFor(t, "the third job running", func() bool { return running(ids[2]) && rec.isRunning(ids[2]) })
	f.cancel(ids[1])
	f.cancel(ids[2])
	for _, id := range ids {
		if v := f.waitFinished(t, id); v.State != "cancelled" {
			t.Errorf("%s: %s, want cancelled", id, v.State)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.maxRunning != 2 || len(rec.overlaps) > 0 {
		t.Errorf("at most %d workloads at once, slots shared: %v; want 2 and none", rec.maxRunning, rec.overlaps)
	}
	if a, b := rec.specs[ids[0]].Slot, rec.specs[ids[1]].Slot; a == b || a < 0 || a > 1 || b < 0 || b > 1 {
		t.Errorf("concurrent jobs in slots %d and %d; want 0 and 1", a, b)
	}
	f.checkNoViolations(t)
}

func TestGracefulStopFinishesRunningJobsAndLeasesNoMore(t *testing.T) {
	t.Parallel()
	e, _ := newBwrap(t)
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, e)
	cfg.MaxJobs = 2
	// The job's output outgrows what the agent holds unacknowledged while
	// log uploads are held: the job stays blocked on its output pipe
	// until the test releases them.
	cfg.MaxUnacked = 64 << 10
	release := f.holdLogs()
	defer release()
	first := f.enqueue(fakeJobSpec{argv: sh("seq 1 100000; echo done")})
	ra := startAgent(t, cfg)
	f.waitJob(t, first, "running", func(v fakeJobView) bool { return v.State == "running" })
	// With a slot free, a lease request waits for a job.
	f.waitFor(t, "a lease request", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.leasePolls == 1 })

	ra.GracefulStop()
	f.waitFor(t, "the lease request to be abandoned", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.leasePolls == 0 })
	second := f.enqueue(fakeJobSpec{argv: sh("exit 0")})
	if ra.returned() {
		t.Fatal("Run returned while a job was running")
	}
	release()
	if err := ra.wait(t); err != nil {
		t.Fatalf("Run after GracefulStop: %v", err)
	}
	v := f.view(first)
	if diff := cmp.Diff([]apiv1.Complete{{Fence: 1, State: "succeeded", ExitCode: new(0)}}, v.Completes); diff != "" {
		t.Errorf("completions of the running job (-want +got):\n%s", diff)
	}
	if out, _ := f.output(first, 1); !strings.HasSuffix(out, "99999\n100000\ndone\n") {
		t.Errorf("output of the running job ends with %q", out[max(0, len(out)-30):])
	}
	if st := f.view(second).State; st != "queued" {
		t.Errorf("job queued after GracefulStop is %s; want queued", st)
	}
	f.checkNoViolations(t)
}

func TestHardStopKillsWorkloadsAndReportsNothing(t *testing.T) {
	t.Parallel()
	e, opts := newBwrap(t)
	rec := record(e)
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, rec)
	cfg.MaxJobs = 2
	ids := []string{
		f.enqueue(fakeJobSpec{argv: sh("echo up; sleep 1000 & sleep 1000")}),
		f.enqueue(fakeJobSpec{argv: sh("echo up; exec sleep 1000")}),
	}
	ra := startAgent(t, cfg)
	for _, id := range ids {
		f.waitFor(t, "output of "+id, func() bool { out, _ := f.output(id, 1); return out == "up\n" })
	}
	ra.cancel()
	if err := ra.wait(t); !errors.Is(err, context.Canceled) {
		t.Errorf("Run after a hard stop: %v; want context.Canceled", err)
	}
	for _, id := range ids {
		res := rec.results(id)
		if len(res) != 1 || !errors.Is(res[0].Cause, context.Canceled) {
			t.Errorf("%s: executor results %+v; want one killed by the hard stop", id, res)
		}
		if v := f.view(id); len(v.Completes) != 0 || v.State != "running" {
			t.Errorf("%s: %+v; want it still running, unreported, until its lease expires", id, v)
		}
	}
	if os.Geteuid() == 0 {
		for slot := range 2 {
			if left := processesOf(t, opts.UIDBase+slot); len(left) > 0 {
				t.Errorf("processes of slot %d left running: %v", slot, left)
			}
		}
	}
	f.checkNoViolations(t)
}

func TestGitHubJobRunsRunnerFromClone(t *testing.T) {
	t.Parallel()
	e, _ := newBwrap(t)
	rec := record(e)
	f := newFakeControlPlane(30 * time.Second)
	cfg, logs := testConfig(t, f.serve(t), f, rec)
	runnerDir := filepath.Join(traversableDir(t), "actions-runner")
	if err := os.MkdirAll(filepath.Join(runnerDir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A stand-in for the runner: it shows its argument count and working
	// directory, never the jit config, and writes into its directory as
	// the real one does.
	script := "#!/bin/sh\necho \"args=$#\"\necho \"cwd=$(pwd)\"\necho \"$1\"\ncd \"$(dirname \"$0\")\" && echo runner > .runner && ls -A\n"
	if err := os.WriteFile(filepath.Join(runnerDir, "run.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.RunnerDir = runnerDir
	cfg.RunnerClones = filepath.Join(traversableDir(t), "runners")
	cfg.RunnerUIDs = e.Identity
	const jit = "c2VjcmV0LWppdC1jb25maWc="
	id := f.enqueue(fakeJobSpec{runner: &apiv1.RunnerLease{Name: "nimbus-runner-1", JITConfig: jit, Labels: []string{"linux"}}})
	startAgent(t, cfg)

	v := f.waitFinished(t, id)
	if diff := cmp.Diff([]apiv1.Complete{{Fence: 1, State: "succeeded", ExitCode: new(0)}}, v.Completes); diff != "" {
		t.Errorf("completions (-want +got):\n%s", diff)
	}
	out, _ := f.output(id, 1)
	if want := "args=2\ncwd=/workspace\n--jitconfig\n.runner\nbin\nrun.sh\n"; out != want {
		t.Errorf("runner output %q; want %q", out, want)
	}
	spec := rec.spec(id)
	if diff := cmp.Diff([]string{"/runner/run.sh", "--jitconfig", jit}, spec.Argv); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	if len(spec.Binds) != 1 || spec.Binds[0].Target != "/runner" || !strings.HasPrefix(spec.Binds[0].Source, cfg.RunnerClones+"/") {
		t.Errorf("binds %+v; want the clone under %s at /runner", spec.Binds, cfg.RunnerClones)
	}
	if strings.Contains(logs.String(), jit) {
		t.Error("the agent logged the jit config")
	}
	if _, err := os.Stat(filepath.Join(runnerDir, ".runner")); err == nil {
		t.Error("the job wrote into the shared runner directory")
	}
	if entries, err := os.ReadDir(cfg.RunnerClones); err != nil || len(entries) != 0 {
		t.Errorf("runner clones left: %v, %v", entries, err)
	}
	f.checkNoViolations(t)
}

func TestGitHubJobWithoutRunnerDirFails(t *testing.T) {
	t.Parallel()
	rec := record(funcExecutor(func(context.Context, executor.Spec) int { return 0 }))
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, rec)
	id := f.enqueue(fakeJobSpec{runner: &apiv1.RunnerLease{Name: "r", JITConfig: "secret", Labels: []string{"linux"}}})
	startAgent(t, cfg)
	v := f.waitFinished(t, id)
	want := []apiv1.Complete{{Fence: 1, State: "failed", Reason: errNoRunnerDir.Error()}}
	if diff := cmp.Diff(want, v.Completes); diff != "" {
		t.Errorf("completions (-want +got):\n%s", diff)
	}
	if res := rec.results(id); len(res) != 0 {
		t.Errorf("the executor ran the job: %+v", res)
	}
}

// Output is uploaded in the binary form (apiv1.ContentTypeLogs); a server
// that answers it 415 (one older than the form) gets JSON from then on,
// after that one refusal, and the output arrives whole either way.
func TestLogsUploadForm(t *testing.T) {
	t.Parallel()
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("jsonOnly=%v", old), func(t *testing.T) {
			t.Parallel()
			e, _ := newBwrap(t)
			f := newFakeControlPlane(30 * time.Second)
			f.jsonOnly = old
			cfg, _ := testConfig(t, f.serve(t), f, e)
			cfg.MaxChunk = 4 << 10
			cfg.FlushInterval = 20 * time.Millisecond
			// Two jobs, one after the other, each in bursts: several uploads.
			var ids []string
			for range 2 {
				ids = append(ids, f.enqueue(fakeJobSpec{argv: sh(`for i in 1 2 3 4 5; do seq 1 3000; sleep 0.05; done`)}))
			}
			cfg.MaxJobs = 1
			startAgent(t, cfg)
			var want strings.Builder
			for range 5 {
				for i := 1; i <= 3000; i++ {
					fmt.Fprintln(&want, i)
				}
			}
			for _, id := range ids {
				if v := f.waitFinished(t, id); len(v.Completes) != 1 || v.Completes[0].State != "succeeded" {
					t.Errorf("job %s: completions %+v", id, v.Completes)
				}
				if got, whole := f.output(id, 1); !whole || got != want.String() {
					t.Errorf("job %s: output of %d bytes (whole %v), want %d", id, len(got), whole, want.Len())
				}
			}
			got := f.logsUploads()
			binary, json := got[apiv1.ContentTypeLogs], got["application/json"]
			if len(got) > 2 || !old && (binary < 4 || json != 0) || old && (binary != 1 || json < 4) {
				t.Errorf("logs uploads by Content-Type: %v", got)
			}
			f.checkNoViolations(t)
		})
	}
}
