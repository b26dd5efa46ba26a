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
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

func TestRunExitCodes(t *testing.T) {
	e := newExecutor(t)
	tests := []struct {
		name string
		argv []string
		want int
	}{
		{"success", []string{"true"}, 0},
		{"failure", []string{"sh", "-c", "exit 3"}, 3},
		{"command not found", []string{"no-such-command-nimbus"}, 127},
		{"not executable", []string{"/etc/passwd"}, 126},
		{"killed by a signal inside", []string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			res, err := e.Run(t.Context(), executor.Spec{JobID: "exit", Argv: tt.argv, Output: &out, Slot: newSlot(t)})
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tt.want || res.Cause != nil {
				t.Errorf("Run(%q) = exit %d, cause %v; want exit %d, no cause\noutput: %s", tt.argv, res.ExitCode, res.Cause, tt.want, out.String())
			}
			if res.Started.IsZero() || res.Finished.Before(res.Started) {
				t.Errorf("Started %v, Finished %v", res.Started, res.Finished)
			}
		})
	}
}

func TestRunIdentity(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	uid, gid, err := e.Identity(slot)
	if err != nil {
		t.Fatal(err)
	}
	if e.asRoot && uid != testUIDBase+slot {
		t.Fatalf("Identity(%d) = %d, want %d", slot, uid, testUIDBase+slot)
	}
	_, out := runScript(t, e, slot, `
		echo "uid $(id -u) gid $(id -g) user $(whoami)"
		grep ^Cap /proc/self/status
		echo "hostname $(hostname)"
		echo "workspace $(stat -c %u:%g:%a /workspace) pwd $(pwd)"
		echo "nested userns $(unshare --user true 2>/dev/null && echo allowed || echo refused)"
	`)
	zero := "0000000000000000"
	want := fmt.Sprintf(`uid %d gid %d user nimbus
CapInh:	%s
CapPrm:	%s
CapEff:	%s
CapBnd:	%s
CapAmb:	%s
hostname nimbus
workspace %d:%d:700 pwd /workspace
nested userns refused
`, uid, gid, zero, zero, zero, zero, zero, uid, gid)
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("identity inside the sandbox (-want +got):\n%s", diff)
	}
	if uid == 0 {
		t.Error("the sandbox runs as uid 0")
	}
	if e.asRoot {
		_, groups := runScript(t, e, slot, `id -G`)
		if want := fmt.Sprintf("%d\n", gid); groups != want {
			t.Errorf("groups in the sandbox: %q, want %q", groups, want)
		}
	}
}

// TestRunHostIdentity looks from the host at every process between the
// agent and the job: none may be root when the agent is.
func TestRunHostIdentity(t *testing.T) {
	e := newExecutor(t)
	if !e.asRoot {
		t.Skip("the agent is not root: bwrap runs as the agent's own uid")
	}
	slot := newSlot(t)
	uid := sandboxUID(t, e, slot)
	token := newToken()
	w := newWatchWriter("ready")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.Run(ctx, executor.Spec{JobID: "host-identity", Argv: []string{"sh", "-c", "echo ready; exec sleep " + token}, Output: w, Slot: slot})
		done <- err
	}()
	waitReady(t, w, done)

	// Find the job and walk up to the test process.
	var pid int
	eventually(t, "the job's sleep runs", func() bool {
		for _, p := range liveProcesses(t, -1, token) {
			if f := strings.Fields(p); f[2] == "sleep" {
				pid, _ = strconv.Atoi(f[0])
			}
		}
		return pid != 0
	})
	var chain []string
	for pid != os.Getpid() {
		st, err := readStatus(pid)
		if err != nil {
			t.Fatalf("read status of %d: %v", pid, err)
		}
		chain = append(chain, fmt.Sprintf("%d:%v", pid, st.uids))
		if st.uids != [4]int{uid, uid, uid, uid} {
			t.Errorf("process %d runs as host uids %v, want all %d", pid, st.uids, uid)
		}
		pid = st.ppid
		if pid <= 1 {
			t.Fatalf("the chain %v does not lead to the test process", chain)
		}
	}
	if len(chain) != 3 { // job, sandbox init, bwrap
		t.Errorf("process chain from job to agent: %v, want job, init, bwrap", chain)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRunEnvironment(t *testing.T) {
	t.Setenv("NIMBUS_AGENT_SECRET", "must not leak")
	e := newExecutor(t)
	tests := []struct {
		name string
		env  map[string]string
		want map[string]string
	}{
		{
			name: "defaults added",
			env:  map[string]string{"FOO": "bar baz", "EMPTY": "", "LINES": "a\nb", "QUOTE": `'"$x`},
			want: map[string]string{
				"FOO": "bar baz", "EMPTY": "", "LINES": "a\nb", "QUOTE": `'"$x`,
				"PATH": defaultPath, "HOME": "/workspace", "PWD": "/workspace",
			},
		},
		{
			name: "given PATH and HOME kept",
			env:  map[string]string{"PATH": "/usr/bin", "HOME": "/tmp"},
			want: map[string]string{"PATH": "/usr/bin", "HOME": "/tmp", "PWD": "/workspace"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := e.Run(t.Context(), executor.Spec{JobID: "env", Argv: []string{"env", "-0"}, Env: tt.env, Output: &out, Slot: newSlot(t)})
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("Run = %+v, %v; output: %s", res, err, out.String())
			}
			got := map[string]string{}
			for _, kv := range strings.Split(strings.TrimSuffix(out.String(), "\x00"), "\x00") {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = v
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("job environment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunFilesystem(t *testing.T) {
	e := newExecutor(t)
	roDir := traversableDir(t)
	if err := os.WriteFile(filepath.Join(roDir, "data"), []byte("shared"), 0o644); err != nil {
		t.Fatal(err)
	}
	rwDir := traversableDir(t)
	if err := os.Chmod(rwDir, 0o777); err != nil {
		t.Fatal(err)
	}
	hostTmp, err := os.CreateTemp("", "nimbus-host-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	hostTmp.Close()
	t.Cleanup(func() { os.Remove(hostTmp.Name()) })

	tests := []struct {
		name   string
		script string
	}{
		{"usr is read-only", `! touch /usr/nimbus-test 2>/dev/null`},
		{"root is read-only", `! mkdir /nimbus-test 2>/dev/null`},
		{"etc is read-only", `! touch /etc/nimbus-test 2>/dev/null && ! sh -c 'echo x >> /etc/passwd' 2>/dev/null`},
		{"no shadow", `! test -e /etc/shadow && ! test -e /etc/gshadow`},
		{"no host homes", `! test -e /root && ! test -e /home && ! test -e /var`},
		{"system binaries", `test -x /bin/sh && test -x /usr/bin/env && test -e /lib64 -o ! -e /usr/lib64`},
		{"tmp is writable", `echo x > /tmp/f && test -s /tmp/f`},
		{"tmp is private", `! test -e ` + hostTmp.Name()},
		{"workspace is writable", `echo x > /workspace/f && test "$(pwd)" = /workspace && test "$HOME" = /workspace`},
		{"dev is minimal", `test -c /dev/null && test -c /dev/urandom && ! test -e /dev/sda && ! test -e /dev/vda && ! test -e /dev/kmsg`},
		{"read-only bind", `test "$(cat /ro/data)" = shared && ! touch /ro/new 2>/dev/null`},
		{"read-write bind", `echo written > /rw/out`},
		{"certificates", `test -d /etc/ssl/certs`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, out := runScript(t, e, newSlot(t), "set -e\n"+tt.script, func(s *executor.Spec) {
				s.Binds = []executor.Bind{{Source: roDir, Target: "/ro", ReadOnly: true}, {Source: rwDir, Target: "/rw"}}
			})
			if res.ExitCode != 0 {
				t.Errorf("%s: exit %d, output:\n%s", tt.script, res.ExitCode, out)
			}
		})
	}
	if got, err := os.ReadFile(filepath.Join(rwDir, "out")); err != nil || string(got) != "written\n" {
		t.Errorf("read-write bind: host sees %q, %v", got, err)
	}
}

// TestRunEtc checks that the sandbox sees only the chosen entries of /etc.
func TestRunEtc(t *testing.T) {
	e := newExecutor(t)
	_, out := runScript(t, e, newSlot(t), `ls -A /etc; echo; cat /etc/passwd`)
	list, passwd, _ := strings.Cut(out, "\n\n")
	allowed := append([]string{"passwd", "group"}, DefaultEtc...)
	for _, name := range strings.Fields(list) {
		if !slices.Contains(allowed, name) {
			t.Errorf("/etc/%s is visible in the sandbox", name)
		}
	}
	hostPasswd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(hostPasswd), "\n") {
		name, _, _ := strings.Cut(line, ":")
		if name != "" && name != "root" && name != "nobody" && strings.Contains(passwd, name+":") {
			t.Errorf("host account %q is visible in the sandbox's /etc/passwd", name)
		}
	}
}

func TestRunNetwork(t *testing.T) {
	e := newExecutor(t)
	res, out := runScript(t, e, newSlot(t), `cat /proc/net/dev`)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d: %s", res.ExitCode, out)
	}
	var ifaces []string
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
	}
	if diff := cmp.Diff([]string{"lo"}, ifaces); diff != "" {
		t.Errorf("network interfaces in the sandbox (-want +got):\n%s", diff)
	}
}

func TestRunProcessIsolation(t *testing.T) {
	e := newExecutor(t)
	token := newToken()
	host := exec.Command("sleep", token)
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Process.Kill(); host.Wait() })

	// The host's sleep holds token in its command line; the sandbox gets
	// token only through its environment.
	_, out := runScript(t, e, newSlot(t), `
		for d in /proc/[0-9]*; do
			case "$(tr '\0' ' ' 2>/dev/null < $d/cmdline)" in *"$TOKEN"*) echo "sees host process $d";; esac
			echo "${d#/proc/} $(cat $d/comm)"
		done
	`, func(s *executor.Spec) { s.Env = map[string]string{"TOKEN": token} })
	if strings.Contains(out, "sees host process") {
		t.Errorf("a host process is visible in the sandbox:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		first, _, _ := strings.Cut(line, " ")
		pid, err := strconv.Atoi(first)
		if err != nil {
			t.Fatalf("unexpected line %q in:\n%s", line, out)
		}
		if pid > 10 {
			t.Errorf("pid %d in the sandbox: its pid namespace is not fresh\n%s", pid, out)
		}
	}
	if !strings.HasPrefix(out, "1 ") {
		t.Errorf("no pid 1 in the sandbox:\n%s", out)
	}
}

func TestRunOutput(t *testing.T) {
	e := newExecutor(t)
	t.Run("interleaved", func(t *testing.T) {
		_, out := runScript(t, e, newSlot(t), `echo one; echo two >&2; echo three; echo four >&2`)
		if diff := cmp.Diff("one\ntwo\nthree\nfour\n", out); diff != "" {
			t.Errorf("output (-want +got):\n%s", diff)
		}
	})
	t.Run("large", func(t *testing.T) {
		const n = 2 << 20
		_, out := runScript(t, e, newSlot(t), fmt.Sprintf(`head -c %d /dev/zero | tr '\0' x; echo end >&2`, n))
		if want := strings.Repeat("x", n) + "end\n"; out != want {
			t.Errorf("got %d bytes of output, want %d", len(out), len(want))
		}
	})
}

// daemons is a job that leaves processes behind in every way it can: a new
// session, a double fork, a background job, each a "sleep $TOKEN". It
// prints ready once the three run. TOKEN comes from the environment, so
// that only the sleeps hold it in their command lines.
const daemons = `
	setsid sleep "$TOKEN" &
	( sh -c 'sleep "$TOKEN" & exit 0' & )
	nohup sleep "$TOKEN" >/dev/null 2>&1 &
	count() {
		n=0
		for d in /proc/[0-9]*; do
			case "$(tr '\0' ' ' 2>/dev/null < $d/cmdline)" in *"$TOKEN"*) n=$((n+1));; esac
		done
		echo $n
	}
	i=0
	while [ "$(count)" -lt 3 ]; do
		i=$((i+1)); [ $i -gt 500 ] && { echo "the daemons did not start"; exit 20; }
		sleep 0.02
	done
	echo ready
`

func TestRunCancelKillsEverything(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	uid := sandboxUID(t, e, slot)
	token := newToken()
	w := newWatchWriter("ready")
	errStop := errors.New("test stops the job")
	ctx, cancel := context.WithCancelCause(t.Context())
	type outcome struct {
		res executor.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := e.Run(ctx, executor.Spec{
			JobID:  "cancel",
			Argv:   []string{"sh", "-c", daemons + `exec sleep "$TOKEN"`},
			Env:    map[string]string{"TOKEN": token},
			Output: w,
			Slot:   slot,
		})
		done <- outcome{res, err}
	}()
	waitReady(t, w, nil)
	eventually(t, "the job runs its 4 sleeps", func() bool { return len(liveProcesses(t, -1, token)) == 4 })
	cancel(errStop)
	got := <-done
	if got.err != nil {
		t.Fatal(got.err)
	}
	if !errors.Is(got.res.Cause, errStop) || got.res.ExitCode != -1 {
		t.Errorf("Run = exit %d, cause %v; want -1, %v", got.res.ExitCode, got.res.Cause, errStop)
	}
	if left := liveProcesses(t, uid, token); len(left) > 0 {
		t.Errorf("processes left after Run returned:\n%s", strings.Join(left, "\n"))
	}
}

func TestRunTimeout(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	uid := sandboxUID(t, e, slot)
	token := newToken()
	res, out := runScript(t, e, slot, daemons+`exec sleep "$TOKEN"`, func(s *executor.Spec) {
		s.Env = map[string]string{"TOKEN": token}
		s.Timeout = 2 * time.Second
	})
	if !errors.Is(res.Cause, executor.ErrTimeout) || res.ExitCode != -1 {
		t.Errorf("Run = exit %d, cause %v; want -1, %v\noutput: %s", res.ExitCode, res.Cause, executor.ErrTimeout, out)
	}
	if left := liveProcesses(t, uid, token); len(left) > 0 {
		t.Errorf("processes left after Run returned:\n%s", strings.Join(left, "\n"))
	}
}

func TestRunExitKillsDaemons(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	uid := sandboxUID(t, e, slot)
	token := newToken()
	res, out := runScript(t, e, slot, daemons+"exit 5", func(s *executor.Spec) {
		s.Env = map[string]string{"TOKEN": token}
	})
	if res.ExitCode != 5 || res.Cause != nil {
		t.Errorf("Run = exit %d, cause %v; want 5, none", res.ExitCode, res.Cause)
	}
	if out != "ready\n" {
		t.Errorf("output %q, want %q", out, "ready\n")
	}
	if left := liveProcesses(t, uid, token); len(left) > 0 {
		t.Errorf("processes left after Run returned:\n%s", strings.Join(left, "\n"))
	}
}

func TestRunCanceledBeforeStart(t *testing.T) {
	e := newExecutor(t)
	errStop := errors.New("stopped early")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errStop)
	res, err := e.Run(ctx, executor.Spec{JobID: "early", Argv: []string{"true"}, Slot: newSlot(t)})
	if err != nil || !errors.Is(res.Cause, errStop) || res.ExitCode != -1 {
		t.Errorf("Run = %+v, %v; want exit -1 and cause %v", res, err, errStop)
	}
	if entries, _ := os.ReadDir(e.opts.WorkRoot); len(entries) > 0 {
		t.Errorf("work root holds %d entries", len(entries))
	}
}

// TestRunDiesWithParent kills a stand-in agent (this test binary, run as a
// child) while its job runs: nothing of the job may survive it.
func TestRunDiesWithParent(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	uid := sandboxUID(t, e, slot)
	token := newToken()
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(),
		childModeEnv+"=run",
		childRootEnv+"="+e.opts.WorkRoot,
		childBaseEnv+"="+strconv.Itoa(testUIDBase),
		childSlotEnv+"="+strconv.Itoa(slot),
		childArgEnv+"="+daemons+`exec sleep "$TOKEN"`,
		childTokenEnv+"="+token,
	)
	w := newWatchWriter("ready")
	agent.Stdout = w
	agent.Stderr = w
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	waitReady(t, w, exited)
	eventually(t, "the job runs its 4 sleeps", func() bool { return len(liveProcesses(t, -1, token)) == 4 })
	if err := agent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	// The kernel's parent-death signals and the pid namespace's teardown
	// take their time: poll.
	var left []string
	eventually(t, "no process of the job is left", func() bool {
		left = liveProcesses(t, uid, token)
		return len(left) == 0
	}, func() { t.Logf("left:\n%s", strings.Join(left, "\n")) })
}

// TestRunParallelJobsIsolated runs two jobs at once: neither sees the
// other's files or processes.
func TestRunParallelJobsIsolated(t *testing.T) {
	e := newExecutor(t)
	meet := traversableDir(t)
	if err := os.Chmod(meet, 0o777); err != nil {
		t.Fatal(err)
	}
	type job struct {
		name, other string
		slot        int
		token       string
		out         bytes.Buffer
		res         executor.Result
		err         error
	}
	jobs := []*job{{name: "a", other: "b"}, {name: "b", other: "a"}}
	for _, j := range jobs {
		j.slot = newSlot(t)
		j.token = newToken()
	}
	// Each job starts a marked sleep, writes a secret to its workspace,
	// meets the other on /sync, then looks for the other's traces.
	script := `
		sleep "$TOKEN" &
		echo "$NAME" > "/workspace/secret-$NAME"
		touch "/sync/$NAME"
		i=0; while [ ! -e "/sync/$OTHER" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
		test -e "/sync/$OTHER" || { echo "never met $OTHER"; exit 10; }
		sees() {
			for d in /proc/[0-9]*; do
				case "$(tr '\0' ' ' 2>/dev/null < $d/cmdline)" in *"$1"*) return 0;; esac
			done
			return 1
		}
		sees "$TOKEN" || { echo "does not see its own process"; exit 12; }
		sees "$OTHER_TOKEN" && { echo "sees $OTHER's process"; exit 11; }
		ls -A /workspace
		touch "/sync/$NAME-done"
		i=0; while [ ! -e "/sync/$OTHER-done" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
	`
	done := make(chan struct{})
	for i, j := range jobs {
		go func() {
			defer func() { done <- struct{}{} }()
			j.res, j.err = e.Run(t.Context(), executor.Spec{
				JobID: "parallel-" + j.name,
				Argv:  []string{"sh", "-c", script},
				Env: map[string]string{
					"NAME": j.name, "OTHER": j.other, "TOKEN": j.token, "OTHER_TOKEN": jobs[1-i].token,
				},
				Binds:  []executor.Bind{{Source: meet, Target: "/sync"}},
				Output: &j.out,
				Slot:   j.slot,
			})
		}()
	}
	<-done
	<-done
	for _, j := range jobs {
		if j.err != nil || j.res.ExitCode != 0 {
			t.Errorf("job %s: %+v, %v\noutput: %s", j.name, j.res, j.err, j.out.String())
			continue
		}
		if want := "secret-" + j.name + "\n"; j.out.String() != want {
			t.Errorf("job %s sees in its workspace %q, want %q", j.name, j.out.String(), want)
		}
	}
}

func TestRunSetupError(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	missing := filepath.Join(t.TempDir(), "missing")
	var out bytes.Buffer
	res, err := e.Run(t.Context(), executor.Spec{
		JobID:  "setup",
		Argv:   []string{"true"},
		Binds:  []executor.Bind{{Source: missing, Target: "/cache"}},
		Output: &out,
		Slot:   slot,
	})
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Run error = %v; want %v naming %s", err, ErrSetup, missing)
	}
	if res.ExitCode != -1 {
		t.Errorf("exit code %d, want -1", res.ExitCode)
	}
	if out.Len() > 0 {
		t.Errorf("bwrap's error went to the job output: %q", out.String())
	}
	if entries, _ := os.ReadDir(e.opts.WorkRoot); len(entries) > 0 {
		t.Errorf("work root holds %d entries after a failed setup", len(entries))
	}
}

func TestRunInvalidSpec(t *testing.T) {
	e := newExecutor(t)
	tests := []struct {
		name string
		spec executor.Spec
		want string
	}{
		{"no command", executor.Spec{}, "empty command"},
		{"bad env name", executor.Spec{Argv: []string{"true"}, Env: map[string]string{"A=B": "c"}}, "invalid environment variable name"},
		{"relative bind", executor.Spec{Argv: []string{"true"}, Binds: []executor.Bind{{Source: "rel", Target: "/x"}}}, "not an absolute path"},
		{"bind over proc", executor.Spec{Argv: []string{"true"}, Binds: []executor.Bind{{Source: "/usr", Target: "/proc/x"}}}, "reserved"},
		{"negative slot", executor.Spec{Argv: []string{"true"}, Slot: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Run(t.Context(), tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(e.opts.WorkRoot); len(entries) > 0 {
		t.Errorf("work root holds %d entries after invalid specs", len(entries))
	}
}

func TestRunWorkspace(t *testing.T) {
	t.Run("removed", func(t *testing.T) {
		e := newExecutor(t)
		runScript(t, e, newSlot(t), `mkdir -p a/b && echo x > a/b/f && chmod 0 a/b a`)
		if entries, _ := os.ReadDir(e.opts.WorkRoot); len(entries) > 0 {
			t.Errorf("work root holds %d entries after Run", len(entries))
		}
	})
	t.Run("kept", func(t *testing.T) {
		e := newExecutor(t, func(o *Options) { o.KeepWorkspace = true })
		slot := newSlot(t)
		runScript(t, e, slot, `echo kept > f`)
		matches, _ := filepath.Glob(filepath.Join(e.opts.WorkRoot, "job-*", "f"))
		if len(matches) != 1 {
			t.Fatalf("kept workspace files: %v", matches)
		}
		uid, gid, _ := e.Identity(slot)
		info, err := os.Stat(matches[0])
		if err != nil {
			t.Fatal(err)
		}
		if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("file written by the job is owned by %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
		}
	})
}

func TestRunInheritedDescriptors(t *testing.T) {
	e := newExecutor(t)
	// A descriptor without close-on-exec, as an agent may inherit one.
	fd, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0)
	if err != nil {
		fd, err = syscall.Open("/dev/null", syscall.O_RDONLY, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	_, out := runScript(t, e, newSlot(t), `ls /proc/self/fd`) // ls itself holds 3
	if diff := cmp.Diff("0\n1\n2\n3\n", out); diff != "" {
		t.Errorf("descriptors open in the job (-want +got):\n%s", diff)
	}
}

// waitReady waits until w has seen its marker; it fails the test if the
// run ends first (exited) or the test's deadline nears.
func waitReady(t *testing.T, w *watchWriter, exited <-chan error) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	select {
	case <-w.ready:
	case err := <-exited:
		t.Fatalf("the job ended before it was ready: %v\noutput: %s", err, w.String())
	case <-timeout:
		t.Fatalf("the job was not ready within 30s; output: %s", w.String())
	}
}

// eventually polls cond until it holds, failing the test after 10s; explain,
// if given, runs before the failure.
func eventually(t *testing.T, what string, cond func() bool, explain ...func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, f := range explain {
				f()
			}
			t.Fatalf("after 10s: not true that %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// failingWriter fails every write, as a log sink that went away.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("sink closed") }

func TestRunOutputSinkFailureDoesNotBlockTheJob(t *testing.T) {
	e := newExecutor(t)
	res, err := e.Run(t.Context(), executor.Spec{
		JobID:  "sink",
		Argv:   []string{"sh", "-c", "head -c 1000000 /dev/zero; exit 7"},
		Output: failingWriter{},
		Slot:   newSlot(t),
	})
	if err != nil || res.ExitCode != 7 {
		t.Errorf("Run = %+v, %v; want exit 7", res, err)
	}
}

// TestRunAsUnprivilegedAgent runs a stand-in agent (this test binary) as
// an ordinary user: its jobs run as that user.
func TestRunAsUnprivilegedAgent(t *testing.T) {
	requireBwrap(t)
	if os.Geteuid() != 0 {
		t.Skip("the tests already run unprivileged")
	}
	agentUID := testUIDBase + newSlot(t) // a uid no sandbox of these tests uses
	dir := traversableDir(t)
	bin := filepath.Join(dir, "agent.test")
	if err := copyFile(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "agent")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, agentUID, agentUID); err != nil {
		t.Fatal(err)
	}
	token := newToken()
	agent := exec.Command(bin, "-test.run=^$")
	agent.Env = []string{
		childModeEnv + "=run",
		childRootEnv + "=" + filepath.Join(home, "work"),
		childSlotEnv + "=3",
		childArgEnv + "=" + daemons + `id -u; id -g; test "$(stat -c %u /workspace)" = "$(id -u)" && echo owns workspace`,
		childTokenEnv + "=" + token,
	}
	agent.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(agentUID), Gid: uint32(agentUID)}}
	out, err := agent.CombinedOutput()
	if err != nil {
		t.Fatalf("agent: %v\n%s", err, out)
	}
	want := fmt.Sprintf("ready\n%d\n%d\nowns workspace\nresult: {ExitCode:0 Cause:<nil> ", agentUID, agentUID)
	if !strings.HasPrefix(string(out), want) || !strings.HasSuffix(string(out), "<nil>\n") {
		t.Errorf("unprivileged agent's job said:\n%s\nwant it to start with:\n%s", out, want)
	}
	if left := liveProcesses(t, agentUID, token); len(left) > 0 {
		t.Errorf("processes left after the agent's Run returned:\n%s", strings.Join(left, "\n"))
	}
	if entries, err := os.ReadDir(filepath.Join(home, "work")); err != nil || len(entries) > 0 {
		t.Errorf("the agent's work root after Run: %d entries, %v", len(entries), err)
	}
}
