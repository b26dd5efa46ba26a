package bwrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

func sh(script string) []string { return []string{"sh", "-c", script} }

func TestRunExitCodesAndOutput(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	tests := []struct {
		name     string
		argv     []string
		wantCode int
		wantOut  string // exact; "" with wantSub set: not checked
		wantSub  string
	}{
		{name: "success", argv: []string{"true"}, wantCode: 0},
		{name: "exit 3", argv: sh("exit 3"), wantCode: 3},
		{name: "missing command", argv: []string{"no-such-command-nimbus"}, wantCode: 127, wantSub: "no-such-command-nimbus"},
		{name: "stdout and stderr interleaved", argv: sh("echo a; echo b >&2; echo c; echo d >&2"), wantOut: "a\nb\nc\nd\n"},
		{name: "arguments passed as given", argv: []string{"printf", "[%s]", "a b", "", "--bind", "$HOME"}, wantOut: "[a b][][--bind][$HOME]"},
		{name: "killed by its own signal", argv: sh("kill -9 $$"), wantCode: 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, out := run(t, e, executor.Spec{JobID: "codes", Argv: tt.argv, Slot: nextSlot()})
			if res.ExitCode != tt.wantCode || res.Cause != nil {
				t.Errorf("exit %d cause %v, want exit %d cause nil; output:\n%s", res.ExitCode, res.Cause, tt.wantCode, out)
			}
			if tt.wantSub != "" && !strings.Contains(out, tt.wantSub) {
				t.Errorf("output %q does not mention %q", out, tt.wantSub)
			}
			if tt.wantSub == "" && out != tt.wantOut {
				t.Errorf("output %q, want %q", out, tt.wantOut)
			}
			if res.Started.IsZero() || res.Finished.Before(res.Started) {
				t.Errorf("started %v, finished %v", res.Started, res.Finished)
			}
		})
	}
}

func TestRunIdentity(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	slot := nextSlot()
	uid, gid := e.IDs(slot)
	if uid != DefaultUIDBase+slot || gid != DefaultUIDBase+slot {
		t.Fatalf("IDs(%d) = %d, %d; want %d for both", slot, uid, gid, DefaultUIDBase+slot)
	}
	// The job's own ids, its capabilities, the owner of its workspace, and
	// how host root's files look from inside (unmapped: overflow id).
	script := `id -u; id -g; id -G
grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status
stat -c '%u %a' /workspace
stat -c '%u' /usr/bin/env
echo x > /workspace/f && stat -c '%u' /workspace/f`
	res, out := run(t, e, executor.Spec{JobID: "identity", Argv: sh(script), Slot: slot})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d; output:\n%s", res.ExitCode, out)
	}
	id := strconv.Itoa(uid)
	want := strings.Join([]string{
		id, id, id,
		"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000",
		id + " 700",
		"65534",
		id,
	}, "\n") + "\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
}

func TestRunHostSeesSandboxUID(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	slot := nextSlot()
	uid, _ := e.IDs(slot)
	const secret = "s3cret-value-nimbus"
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, done, wait := startJob(t, ctx, e, executor.Spec{
		JobID: "host-view", Argv: sh("echo ready; exec sleep 1000"), Slot: slot,
		Env: map[string]string{"TOKEN": secret},
	})
	out.waitFor(t, "ready", done)
	procs := processesOf(t, uid)
	if len(procs) < 3 { // bwrap, its init, sleep
		t.Errorf("host processes of uid %d: %v; want bwrap, its init and the job", uid, procs)
	}
	// Every process of the sandbox runs as its uid on the host: none as root.
	for _, p := range procs {
		pid := strings.Fields(p)[0]
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) == 5 && f[0] == "Uid:" && slices.Contains(f[1:], "0") {
				t.Errorf("process %s runs with host uid 0: %q", p, line)
			}
		}
		// The job's environment reaches bwrap through a pipe, not on a
		// command line that every host user can read.
		cmdline, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), secret) {
			t.Errorf("process %s shows the job's secret on its command line: %q", p, cmdline)
		}
	}
	cancel()
	if res := wait(); res.ExitCode != -1 || !errors.Is(res.Cause, context.Canceled) {
		t.Errorf("exit %d cause %v, want -1 and context.Canceled", res.ExitCode, res.Cause)
	}
}

func TestRunEnvironment(t *testing.T) {
	requireSandbox(t)
	t.Setenv("NIMBUS_AGENT_ONLY", "leak") // the agent's environment must not leak
	e := newTestExecutor(t)
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{
			name: "defaults",
			want: "HOME=/workspace\nPATH=" + DefaultEnvPath + "\n",
		},
		{
			name: "spec only, PATH and HOME overridden",
			env:  map[string]string{"CI": "true", "HOME": "/tmp", "PATH": "/usr/bin:/bin", "MULTI": "a b=c"},
			want: "CI=true\nHOME=/tmp\nMULTI=a b=c\nPATH=/usr/bin:/bin\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, out := run(t, e, executor.Spec{JobID: "env", Argv: sh("env | sort; pwd >&2"), Env: tt.env, Slot: nextSlot()})
			if res.ExitCode != 0 {
				t.Fatalf("exit %d; output:\n%s", res.ExitCode, out)
			}
			// env also shows PWD, which sh sets itself.
			want := tt.want + "/workspace\n"
			got := strings.ReplaceAll(out, "PWD=/workspace\n", "")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("environment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunFilesystem(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	ro := traversableDir(t)
	rw := traversableDir(t)
	if err := os.WriteFile(filepath.Join(ro, "in"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	slot := nextSlot()
	uid, gid := e.IDs(slot)
	if err := os.Chown(rw, uid, gid); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, script string }{
		{"usr is read-only", "! touch /usr/nimbus-test 2>/dev/null"},
		{"root is not writable", "! mkdir /nimbus-test 2>/dev/null"},
		{"shadow is not visible", "! test -e /etc/shadow"},
		{"etc holds only the selected entries", `for f in /etc/*; do case "${f#/etc/}" in passwd|group|hosts|resolv.conf|nsswitch.conf|ld.so.cache|localtime|ssl|ca-certificates|alternatives) ;; *) echo "unexpected $f"; exit 1;; esac; done`},
		{"passwd is from the host", "grep -q '^root:' /etc/passwd"},
		{"merged usr symlinks", `test "$(readlink /bin)" = usr/bin && test -x /bin/sh`},
		{"alternatives resolve", "test -e /etc/alternatives"},
		{"tmp is a private tmpfs", `test -z "$(ls -A /tmp)" && grep -q ' /tmp tmpfs ' /proc/mounts && touch /tmp/x`},
		{"proc is fresh", "grep -q ' /proc proc ' /proc/mounts"},
		{"dev is minimal", `test -c /dev/null && test -c /dev/urandom && ! test -e /dev/vda && ! test -e /dev/mem`},
		{"workspace is cwd and writable", `test "$(pwd)" = /workspace && echo hi > f && test "$(cat /workspace/f)" = hi`},
		{"home and var are absent", "! test -e /root && ! test -e /home && ! test -e /var"},
		{"read-only bind", `test "$(cat /in/in)" = "from host" && ! touch /in/x 2>/dev/null`},
		{"read-write bind", "echo out > /out/written"},
	}
	var script strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&script, "if ( %s ); then echo 'ok: %s'; else echo 'FAIL: %s'; fi\n", c.script, c.name, c.name)
	}
	res, out := run(t, e, executor.Spec{
		JobID: "fs", Argv: sh(script.String()), Slot: slot,
		Binds: []executor.Bind{{Source: ro, Target: "/in", ReadOnly: true}, {Source: rw, Target: "/out"}},
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d; output:\n%s", res.ExitCode, out)
	}
	for _, c := range checks {
		if !strings.Contains(out, "ok: "+c.name+"\n") {
			t.Errorf("%s: failed", c.name)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "written")); err != nil || string(b) != "out\n" {
		t.Errorf("read-write bind: host sees %q, %v; want \"out\\n\"", b, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Error("read-only bind: the job created a file on the host")
	}
}

func TestRunNamespaces(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	script := `hostname
tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '
cat /proc/1/comm
ls /proc | grep -cE '^[0-9]+$'
command -v unshare >/dev/null && ! unshare --user true 2>/dev/null && echo no-userns`
	res, out := run(t, e, executor.Spec{JobID: "ns", Argv: sh(script), Slot: nextSlot()})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d; output:\n%s", res.ExitCode, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("output:\n%s", out)
	}
	if lines[0] != Hostname {
		t.Errorf("hostname %q, want %q", lines[0], Hostname)
	}
	if lines[1] != "lo" {
		t.Errorf("network interfaces %q, want only lo", lines[1])
	}
	if lines[2] != "bwrap" {
		t.Errorf("pid 1 is %q, want bwrap's init", lines[2])
	}
	// bwrap's init, sh, and the ls/grep pipeline: the host's processes are
	// not there.
	if n, err := strconv.Atoi(lines[3]); err != nil || n > 5 {
		t.Errorf("%s processes visible in /proc, want only the sandbox's few", lines[3])
	}
	if lines[4] != "no-userns" {
		t.Errorf("the job could create a user namespace: %q", lines[4])
	}
}

func TestRunWorkspaceLifecycle(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			t.Parallel()
			e := newTestExecutor(t, func(o *Options) { o.KeepWorkspace = keep })
			slot := nextSlot()
			// A job leaving an unwritable tree behind must not stop removal.
			res, out := run(t, e, executor.Spec{
				JobID: "ws/../lifecycle", Argv: sh("mkdir -p a/b && echo x > a/b/f && chmod 0 a/b && chmod 500 a"), Slot: slot,
			})
			if res.ExitCode != 0 {
				t.Fatalf("exit %d; output:\n%s", res.ExitCode, out)
			}
			entries, err := os.ReadDir(e.opts.WorkRoot)
			if err != nil {
				t.Fatal(err)
			}
			if !keep {
				if len(entries) != 0 {
					t.Errorf("work root holds %v after Run, want nothing", entries)
				}
				return
			}
			if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "ws_.._lifecycle-") {
				t.Fatalf("work root holds %v, want one kept workspace named after the job", entries)
			}
			info, err := os.Stat(filepath.Join(e.opts.WorkRoot, entries[0].Name(), "a"))
			if err != nil {
				t.Fatal(err)
			}
			uid, _ := e.IDs(slot)
			if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
				t.Errorf("kept file owned by %d, want the sandbox uid %d", st.Uid, uid)
			}
		})
	}
}

// daemons is a job that leaves daemonised processes behind: a new session,
// a double fork, a process ignoring SIGTERM and SIGHUP.
const daemons = `setsid sleep 1001 &
(sh -c 'sleep 1002 &' &)
nohup sh -c 'trap "" TERM HUP; sleep 1003' >/dev/null 2>&1 &
echo ready
`

func TestRunKillsDaemonsWhenTheJobExits(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	res, out := run(t, e, executor.Spec{JobID: "daemons", Argv: sh(daemons + "exit 4"), Slot: nextSlot()})
	if res.ExitCode != 4 || res.Cause != nil || out != "ready\n" {
		t.Errorf("exit %d cause %v output %q; want 4, nil, \"ready\\n\"", res.ExitCode, res.Cause, out)
	}
}

func TestRunTimeout(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	res, out := run(t, e, executor.Spec{
		JobID: "timeout", Argv: sh(daemons + "sleep 1000"), Slot: nextSlot(), Timeout: 500 * time.Millisecond,
	})
	if res.ExitCode != -1 || !errors.Is(res.Cause, executor.ErrTimeout) {
		t.Errorf("exit %d cause %v, want -1 and ErrTimeout; output:\n%s", res.ExitCode, res.Cause, out)
	}
	if out != "ready\n" {
		t.Errorf("output %q, want everything written before the kill", out)
	}
}

func TestRunCancel(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	errLeaseLost := errors.New("lease lost")
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	out, done, wait := startJob(t, ctx, e, executor.Spec{
		JobID: "cancel", Argv: sh(daemons + "sleep 1000"), Slot: nextSlot(), Timeout: time.Hour,
	})
	out.waitFor(t, "ready", done)
	cancel(errLeaseLost)
	if res := wait(); res.ExitCode != -1 || !errors.Is(res.Cause, errLeaseLost) {
		t.Errorf("exit %d cause %v, want -1 and the context's cause", res.ExitCode, res.Cause)
	}
}

func TestRunAlreadyCancelled(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	ctx, cancel := context.WithCancelCause(t.Context())
	cause := errors.New("agent stopping")
	cancel(cause)
	res, err := e.Run(ctx, executor.Spec{JobID: "never", Argv: []string{"true"}})
	if err != nil || res.ExitCode != -1 || !errors.Is(res.Cause, cause) {
		t.Errorf("Run = exit %d cause %v err %v; want -1, the cause, nil", res.ExitCode, res.Cause, err)
	}
	if entries, _ := os.ReadDir(e.opts.WorkRoot); len(entries) != 0 {
		t.Errorf("workspace created for a job that never started: %v", entries)
	}
}

func TestRunParallelJobsAreIsolated(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t, func(o *Options) { o.KeepWorkspace = true })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Job A keeps a file in its workspace and a recognisable process.
	outA, doneA, waitA := startJob(t, ctx, e, executor.Spec{
		JobID: "job-a", Argv: sh("echo secret > mine; echo ready; exec sleep 4242"), Slot: nextSlot(),
	})
	outA.waitFor(t, "ready", doneA)
	entries, err := os.ReadDir(e.opts.WorkRoot)
	if err != nil || len(entries) != 1 {
		t.Fatalf("work root: %v, %v; want job A's workspace", entries, err)
	}
	wsA := filepath.Join(e.opts.WorkRoot, entries[0].Name())

	// Job B, in another slot, looks for both from inside its own sandbox.
	script := fmt.Sprintf(`for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline; echo; done | grep -c 'sleep 424[2]'
ls %[1]s 2>&1 || true
cat %[1]s/mine 2>&1 || true
ls /workspace`, wsA)
	res, out := run(t, e, executor.Spec{JobID: "job-b", Argv: sh(script), Slot: nextSlot()})
	if res.ExitCode != 0 {
		t.Fatalf("job B: exit %d; output:\n%s", res.ExitCode, out)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != "0" {
		t.Errorf("job B sees job A's process; output:\n%s", out)
	}
	if strings.Contains(out, "secret") || strings.Contains(out, "\nmine\n") {
		t.Errorf("job B sees job A's files; output:\n%s", out)
	}
	// Even on the host, job B's uid cannot enter job A's workspace.
	info, err := os.Stat(wsA)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("workspace mode %o, want 0700", perm)
	}
	cancel()
	if res := waitA(); res.Cause == nil {
		t.Errorf("job A: exit %d, want it killed", res.ExitCode)
	}
}

func TestRunSetupFailure(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	// /usr is read-only: bwrap cannot create the mount point.
	src := traversableDir(t)
	var out syncBuffer
	res, err := e.Run(t.Context(), executor.Spec{
		JobID: "setup", Argv: []string{"true"}, Slot: nextSlot(), Output: &out,
		Binds: []executor.Bind{{Source: src, Target: "/usr/nimbus/no-such-dir"}},
	})
	if err == nil || !strings.Contains(err.Error(), "bwrap:") {
		t.Fatalf("Run = %+v, %v; want an error quoting bwrap", res, err)
	}
	if res.ExitCode != -1 {
		t.Errorf("exit %d, want -1", res.ExitCode)
	}
	t.Logf("error: %v", err)
	if entries, _ := os.ReadDir(e.opts.WorkRoot); len(entries) != 0 {
		t.Errorf("workspace left after a setup failure: %v", entries)
	}
}

func TestRunInvalidSpec(t *testing.T) {
	t.Parallel()
	e := newTestExecutor(t)
	_, err := e.Run(t.Context(), executor.Spec{JobID: "bad", Argv: nil})
	if err == nil || !strings.Contains(err.Error(), "no command") {
		t.Errorf("Run: %v, want an invalid spec error", err)
	}
}

// failingWriter accepts n bytes, then fails every write.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n <= 0 {
		return 0, errors.New("log sink down")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestRunOutputSinkFailureDoesNotBlockTheJob(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	// 4 MiB: far more than a pipe holds.
	res, _ := run(t, e, executor.Spec{
		JobID: "sink", Argv: sh("head -c 4194304 /dev/zero; exit 5"), Slot: nextSlot(), Output: &failingWriter{n: 1000},
	})
	if res.ExitCode != 5 {
		t.Errorf("exit %d cause %v, want 5", res.ExitCode, res.Cause)
	}
}
