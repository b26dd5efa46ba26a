package bwrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// requireRoot skips (or under CI=true fails) a test of what only a root
// agent does: cgroups and disks.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "cgroup and disk limits need root")
	}
}

func withLimits(l executor.Limits) func(*executor.Spec) {
	return func(s *executor.Spec) { s.Limits = l }
}

// processCgroups returns, per controller ("" on cgroup v2), the directory
// of the cgroup host process pid is in.
func processCgroups(t *testing.T, e *Executor, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := parseProcCgroup(string(data))
	if err != nil {
		t.Fatal(err)
	}
	hier := map[string]cgroupHierarchy{}
	switch tree := e.cgroups.(type) {
	case *cgroupV1:
		hier = tree.hier
	case *cgroupV2:
		hier[""] = tree.hier
	}
	out := map[string]string{}
	for c, h := range hier {
		for _, l := range lines {
			if l.id == h.id {
				if out[c], err = h.dir(l.path); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return out
}

// groupDirs are the directories of the Executor's cgroup group.
func groupDirs(e *Executor) []string {
	switch tree := e.cgroups.(type) {
	case *cgroupV1:
		var out []string
		for _, c := range tree.controllers() {
			out = append(out, tree.groups[c])
		}
		return out
	case *cgroupV2:
		return []string{tree.group}
	}
	return nil
}

// sandboxCgroupsLeft counts the sandbox cgroups in the Executor's group.
func sandboxCgroupsLeft(t *testing.T, e *Executor) []string {
	t.Helper()
	var left []string
	for _, g := range groupDirs(e) {
		entries, err := os.ReadDir(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range entries {
			if ent.IsDir() {
				left = append(left, filepath.Join(g, ent.Name()))
			}
		}
	}
	return left
}

// mountsUnder lists the host's mount points under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := parseMountinfo(string(data))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mounts {
		if strings.HasPrefix(m.Point, dir+"/") {
			out = append(out, m.Point)
		}
	}
	return out
}

// loopsBackedBy lists the loop devices whose backing file is under dir.
func loopsBackedBy(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(string(b), dir+"/") {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

func TestRunMemoryLimit(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	e := newExecutor(t)
	limit := int64(64 << 20)
	res, out := runScript(t, e, newSlot(t), `/probe/sandboxprobe alloc 512; echo "survived $?"`,
		withProbe(t), withLimits(executor.Limits{Memory: limit}))
	var lim *executor.LimitError
	if !errors.As(res.Cause, &lim) || lim.Resource != "memory" || lim.Limit != limit {
		t.Fatalf("Run = exit %d, cause %v; want a memory LimitError\noutput: %s", res.ExitCode, res.Cause, out)
	}
	if got, want := res.Cause.Error(), "memory limit 64 MiB exceeded"; got != want {
		t.Errorf("cause %q, want %q", got, want)
	}
	if !errors.Is(res.Cause, executor.ErrLimitExceeded) {
		t.Errorf("errors.Is(%v, ErrLimitExceeded) is false", res.Cause)
	}
	if strings.Contains(out, "done") {
		t.Errorf("the allocation succeeded past the limit:\n%s", out)
	}

	// Under the limit, the same program runs.
	res, out = runScript(t, e, newSlot(t), `/probe/sandboxprobe alloc 16`, withProbe(t), withLimits(executor.Limits{Memory: limit}))
	if res.ExitCode != 0 || res.Cause != nil {
		t.Errorf("16 MiB under a 64 MiB limit: exit %d, cause %v\n%s", res.ExitCode, res.Cause, out)
	}
}

// TestRunCgroupLimits looks from the host at a running job's cgroup: its
// own, with the limits set, and gone once the job ends.
func TestRunCgroupLimits(t *testing.T) {
	requireRoot(t)
	e := newExecutor(t)
	slot := newSlot(t)
	token := newToken()
	w := newWatchWriter("ready")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	limits := executor.Limits{CPUs: 0.5, Memory: 256 << 20, Pids: 64}
	go func() {
		_, err := e.Run(ctx, executor.Spec{JobID: "cgroup", Argv: []string{"sh", "-c", "echo ready; exec sleep " + token},
			Output: w, Slot: slot, Limits: limits})
		done <- err
	}()
	waitReady(t, w, done)
	var pid int
	eventually(t, "the job's sleep runs", func() bool {
		for _, p := range liveProcesses(t, -1, token) {
			if f := strings.Fields(p); f[2] == "sleep" {
				pid, _ = strconv.Atoi(f[0])
				return true
			}
		}
		return false
	})
	dirs := processCgroups(t, e, pid)
	read := func(c, file string) string {
		b, err := os.ReadFile(filepath.Join(dirs[c], file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	var got, want []string
	if _, ok := e.cgroups.(*cgroupV1); ok {
		got = []string{read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us"), read("memory", "memory.limit_in_bytes"), read("pids", "pids.max")}
		want = []string{"50000", "100000", "268435456", "64"}
	} else {
		got = []string{read("", "cpu.max"), read("", "memory.max"), read("", "pids.max"), read("", "memory.oom.group")}
		want = []string{"50000 100000", "268435456", "64", "1"}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the job's cgroup has %q, want %q", got, want)
	}
	for c, d := range dirs {
		if filepath.Dir(filepath.Dir(d)) == "" || !strings.Contains(d, groupName(e.opts.WorkRoot)+"/slot-") {
			t.Errorf("the job's %s cgroup %s is not its own", c, d)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for c, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("the job's %s cgroup %s is left after Run", c, d)
		}
	}
}

func TestRunPidsLimit(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	e := newExecutor(t)
	res, out := runScript(t, e, newSlot(t), `
		( for i in $(seq 40); do sleep 100 & done ) 2>&1
		set -- /proc/[0-9]*; for p; do echo $p; done
	`, withLimits(executor.Limits{Pids: executor.MinPids}))
	if res.Cause != nil {
		t.Fatalf("cause %v\n%s", res.Cause, out)
	}
	if n := strings.Count(out, "/proc/"); n == 0 || n > executor.MinPids || !strings.Contains(out, "fork") {
		t.Errorf("a job limited to %d pids saw %d processes; want fork to fail:\n%s", executor.MinPids, n, out)
	}
}

func TestRunDiskLimit(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	e := newExecutor(t)
	limit := int64(executor.MinDisk)
	lim := withLimits(executor.Limits{Disk: limit})
	tests := []struct {
		name, script string
	}{
		{"workspace", `head -c 200M /dev/zero > /workspace/big; echo "status $?"; sleep 10`},
		{"tmp", `head -c 200M /dev/zero > /tmp/big; echo "status $?"; sleep 10`},
		{"many files", `mkdir d && cd d && seq 1 40000 | xargs touch 2>/dev/null; echo "status $?"; sleep 10`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, out := runScript(t, e, newSlot(t), tt.script, lim)
			var le *executor.LimitError
			if !errors.As(res.Cause, &le) || le.Resource != "disk" || le.Limit != limit {
				t.Fatalf("Run = exit %d, cause %v; want a disk LimitError\noutput: %s", res.ExitCode, res.Cause, out)
			}
			if !strings.HasPrefix(res.Cause.Error(), "disk limit 64 MiB exceeded") {
				t.Errorf("cause %q", res.Cause)
			}
		})
	}
	t.Run("under the limit, slot reused", func(t *testing.T) {
		t.Parallel()
		slot := newSlot(t)
		for i := range 3 {
			res, out := runScript(t, e, slot, `
				test -z "$(ls -A /workspace)$(ls -A /tmp)" || { echo "not empty: $(ls -A /workspace /tmp)"; exit 1; }
				head -c 40M /dev/zero > /workspace/a && head -c 10M /dev/zero > /tmp/b && echo ok
			`, lim)
			if res.ExitCode != 0 || res.Cause != nil || out != "ok\n" {
				t.Fatalf("run %d: exit %d, cause %v, output %q", i, res.ExitCode, res.Cause, out)
			}
		}
	})
}

// TestRunMountinfoHidesHostPaths reads the job's mountinfo: no path of the
// agent's work root (nor of the directories above it) may appear.
func TestRunMountinfoHidesHostPaths(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	e := newExecutor(t)
	res, out := runScript(t, e, newSlot(t), `cat /proc/self/mountinfo`, withLimits(executor.Limits{Disk: executor.MinDisk}))
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, out)
	}
	for _, p := range []string{e.opts.WorkRoot, filepath.Dir(e.opts.WorkRoot)} {
		if strings.Contains(out, p) {
			t.Errorf("the job's mountinfo shows %s:\n%s", p, out)
		}
	}
	mounts, err := parseMountinfo(out)
	if err != nil {
		t.Fatal(err)
	}
	// The temporary directory's last element (a short name such as
	// "001") may appear anywhere in numbers; as a path element of a
	// mount's root it would tell where the job's files live.
	base := filepath.Base(filepath.Dir(e.opts.WorkRoot))
	for _, m := range mounts {
		if slices.Contains(strings.Split(m.Root, "/"), base) {
			t.Errorf("the job's mountinfo shows %s in the root of %s:\n%s", base, m.Point, out)
		}
	}
	var roots []string
	for _, m := range mounts {
		if m.Point == "/workspace" || m.Point == "/tmp" {
			roots = append(roots, m.Point+"="+m.Root)
		}
	}
	if len(roots) != 2 || !strings.HasPrefix(roots[0], "/tmp=/job-") && !strings.HasPrefix(roots[0], "/workspace=/job-") {
		t.Errorf("workspace and tmp mounts: %q", roots)
	}
}

// TestRunSetsidNohupDaemon leaves a daemon behind: it dies with the job.
func TestRunSetsidNohupDaemon(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	token := newToken()
	res, out := runScript(t, e, slot, `setsid nohup sleep "$TOKEN" >/dev/null 2>&1 & sleep 0.1; echo bye`, func(s *executor.Spec) {
		s.Env = map[string]string{"TOKEN": token}
	})
	if res.ExitCode != 0 || out != "bye\n" {
		t.Fatalf("exit %d, output %q", res.ExitCode, out)
	}
	if left := liveProcesses(t, sandboxUID(t, e, slot), token); len(left) > 0 {
		t.Errorf("processes left after Run returned:\n%s", strings.Join(left, "\n"))
	}
	if e.cgroups != nil {
		if left := sandboxCgroupsLeft(t, e); len(left) > 0 {
			t.Errorf("cgroups left: %v", left)
		}
	}
}

// TestRunManyJobsLeaveNothing runs 300 short jobs, half with every limit,
// one in ten leaving a daemon, 6 at a time, then counts what is left: no process, no cgroup, and after
// Close no mount, loop device or image.
func TestRunManyJobsLeaveNothing(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	e := newExecutor(t)
	const jobs, parallel = 300, 6
	slots := make(chan int, parallel)
	for range parallel {
		slots <- newSlot(t)
	}
	token := newToken()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range jobs {
		slot := <-slots
		wg.Go(func() {
			defer func() { slots <- slot }()
			script := `echo x > /workspace/f && echo y > /tmp/g && cat /workspace/f`
			if i%10 == 0 {
				script = `setsid sleep "$TOKEN" & ` + script
			}
			spec := executor.Spec{JobID: fmt.Sprintf("many-%d", i), Slot: slot,
				Argv: []string{"sh", "-c", script}, Env: map[string]string{"TOKEN": token}}
			if i%2 == 0 {
				spec.Limits = executor.Limits{CPUs: 1, Memory: 128 << 20, Pids: 64, Disk: executor.MinDisk}
			}
			var out bytes.Buffer
			spec.Output = &out
			res, err := e.Run(t.Context(), spec)
			if err != nil || res.ExitCode != 0 || res.Cause != nil || out.String() != "x\n" {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("job %d: %+v, %v, %q", i, res, err, out.String()))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if left := liveProcesses(t, -1, token); len(left) > 0 {
		t.Errorf("processes left:\n%s", strings.Join(left, "\n"))
	}
	if left := sandboxCgroupsLeft(t, e); len(left) > 0 {
		t.Errorf("%d cgroups left: %v", len(left), left)
	}
	if n := len(mountsUnder(t, e.opts.WorkRoot)); n > parallel {
		t.Errorf("%d mounts under the work root, want one per slot (%d)", n, parallel)
	}
	groups := groupDirs(e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, e.opts.WorkRoot); len(m) > 0 {
		t.Errorf("mounts left after Close: %v", m)
	}
	// The kernel detaches an unmounted filesystem's loop device
	// asynchronously (its autoclear runs from a work queue).
	eventually(t, "the loop devices detach after Close", func() bool { return len(loopsBackedBy(t, e.opts.WorkRoot)) == 0 })
	if entries, _ := os.ReadDir(e.opts.WorkRoot); len(entries) > 0 {
		t.Errorf("work root holds %d entries after Close", len(entries))
	}
	for _, g := range groups {
		if _, err := os.Stat(g); err == nil {
			t.Errorf("cgroup group %s left after Close", g)
		}
	}
}

// TestNewSweepsCrashedAgent kills a stand-in agent while its job runs
// with a disk limit, then starts a new Executor on the same work root: it
// removes the crashed one's mount, loop device, image and cgroups.
func TestNewSweepsCrashedAgent(t *testing.T) {
	requireRoot(t)
	e := newExecutor(t)
	root := e.opts.WorkRoot
	if err := e.Close(); err != nil { // the stand-in agent owns the root
		t.Fatal(err)
	}
	token := newToken()
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(),
		childModeEnv+"=run",
		childRootEnv+"="+root,
		childBaseEnv+"="+strconv.Itoa(testUIDBase),
		childSlotEnv+"="+strconv.Itoa(newSlot(t)),
		childArgEnv+"=echo ready; exec sleep $TOKEN",
		childTokenEnv+"="+token,
		childDiskEnv+"="+strconv.Itoa(executor.MinDisk),
	)
	w := newWatchWriter("ready")
	agent.Stdout, agent.Stderr = w, w
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	waitReady(t, w, exited)
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if len(mountsUnder(t, root)) == 0 || len(loopsBackedBy(t, root)) == 0 {
		t.Fatalf("the crashed agent left no mount or loop device to sweep: %v %v", mountsUnder(t, root), loopsBackedBy(t, root))
	}

	e2, err := New(Options{WorkRoot: root, UIDBase: testUIDBase})
	if err != nil {
		t.Fatal(err)
	}
	if left := sandboxCgroupsLeft(t, e2); len(left) > 0 {
		t.Errorf("cgroups left after New: %v", left)
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Errorf("mounts left after New: %v", m)
	}
	eventually(t, "the loop devices detach", func() bool { return len(loopsBackedBy(t, root)) == 0 })
	if entries, _ := os.ReadDir(root); len(entries) > 0 {
		t.Errorf("work root holds %d entries after New", len(entries))
	}
	if err := e2.Close(); err != nil {
		t.Fatal(err)
	}
	if left := liveProcesses(t, -1, token); len(left) > 0 {
		t.Errorf("processes left:\n%s", strings.Join(left, "\n"))
	}
}

func TestRunSlotBusy(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	w := newWatchWriter("ready")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(ctx, executor.Spec{JobID: "first", Argv: []string{"sh", "-c", "echo ready; exec sleep 100"}, Output: w, Slot: slot})
		done <- err
	}()
	waitReady(t, w, done)
	_, err := e.Run(t.Context(), executor.Spec{JobID: "second", Argv: []string{"true"}, Slot: slot})
	if err == nil || !strings.Contains(err.Error(), "already runs a job") {
		t.Errorf("a second run in a busy slot: %v", err)
	}
	cancel()
	<-done
}

func TestRunLimitsRefused(t *testing.T) {
	e := newExecutor(t)
	for _, l := range []executor.Limits{{Memory: 1 << 20}, {Pids: 2}, {CPUs: -1}, {Disk: 1}} {
		_, err := e.Run(t.Context(), executor.Spec{JobID: "bad", Argv: []string{"true"}, Limits: l, Slot: newSlot(t)})
		if err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("Run with limits %+v: %v, want an error naming the limit", l, err)
		}
	}
	unprivileged := &Executor{asRoot: false}
	if err := unprivileged.checkLimits(executor.Limits{Memory: 1 << 30}); err == nil || !strings.Contains(err.Error(), "root") {
		t.Errorf("limits on an agent that is not root: %v, want an error", err)
	}
}
