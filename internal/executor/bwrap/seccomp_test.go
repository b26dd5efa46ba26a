package bwrap

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nimbus-build/nimbus/internal/executor"
)

var (
	probeOnce sync.Once
	probeDir  string
	probeErr  error
)

// sandboxProbe builds testdata/sandboxprobe (static, CGO_ENABLED=0) once per
// test binary and returns a directory holding it, for a test to bind
// read-only at /probe.
func sandboxProbe(t *testing.T) string {
	t.Helper()
	probeOnce.Do(func() {
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			if goBin, err = exec.LookPath("go"); err != nil {
				probeErr = fmt.Errorf("no go command to build the probe: %w", err)
				return
			}
		}
		dir, err := os.MkdirTemp("", "nimbus-probe-")
		if err != nil {
			probeErr = err
			return
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			probeErr = err
			return
		}
		cmd := exec.Command(goBin, "build", "-o", filepath.Join(dir, "sandboxprobe"), "./testdata/sandboxprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("build the probe: %v\n%s", err, out)
			return
		}
		probeDir = dir
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return probeDir
}

func withProbe(t *testing.T) func(*executor.Spec) {
	dir := sandboxProbe(t)
	return func(s *executor.Spec) {
		s.Binds = append(s.Binds, executor.Bind{Source: dir, Target: "/probe", ReadOnly: true})
	}
}

// TestRunSeccompDeniesSyscalls calls every syscall the filter denies from
// a job. Their arguments are chosen so that, without the filter, the
// kernel would accept most of them or refuse them with another errno
// than EPERM.
func TestRunSeccompDeniesSyscalls(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	res, out := runScript(t, e, newSlot(t), `/probe/sandboxprobe syscalls`, withProbe(t))
	if res.ExitCode != 0 {
		t.Fatalf("probe: exit %d\n%s", res.ExitCode, out)
	}
	allowed := map[string]int{
		"clone3":             38, // ENOSYS, so that C libraries fall back to clone
		"personality(query)": 0,
		"ptrace(PEEKDATA)":   3, // ESRCH: ptrace is allowed, pid 1 is not traced by the probe
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 50 {
		t.Fatalf("probe printed %d lines:\n%s", len(lines), out)
	}
	for _, line := range lines {
		name, errno, ok := strings.Cut(line, " ")
		got, err := strconv.Atoi(errno)
		if !ok || err != nil {
			t.Fatalf("probe line %q", line)
		}
		want, ok := allowed[name]
		if !ok {
			want = 1 // EPERM
		}
		if got != want {
			t.Errorf("%s in a job: errno %d, want %d", name, got, want)
		}
	}
}

// TestRunSeccompOtherABIsKilled makes syscalls through the 32-bit x86 and
// x32 entry points, whose numbers mean other calls: the process is killed.
func TestRunSeccompOtherABIsKilled(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("x86-64 only")
	}
	e := newExecutor(t)
	for _, abi := range []string{"int80", "x32"} {
		t.Run(abi, func(t *testing.T) {
			t.Parallel()
			// Outside a sandbox first: kernels may lack either entry point.
			if out, err := exec.Command(filepath.Join(sandboxProbe(t), "sandboxprobe"), abi).CombinedOutput(); err != nil {
				t.Skipf("this kernel does not offer the %s entry point: %v", abi, err)
			} else if !strings.Contains(string(out), "returned") {
				t.Fatalf("probe %s outside a sandbox: %s", abi, out)
			}
			res, out := runScript(t, e, newSlot(t), `/probe/sandboxprobe `+abi+` 2>/dev/null; echo "status $?"`, withProbe(t))
			if res.ExitCode != 0 || !strings.HasSuffix(out, "status 159\n") { // 128 + SIGSYS
				t.Errorf("%s: exit %d, output %q; want it killed by SIGSYS (status 159)", abi, res.ExitCode, out)
			}
		})
	}
}

// TestRunSeccompEverywhere checks that every process of the sandbox runs
// under the filter, bubblewrap's init (pid 1 inside) included, and that
// ordinary programs still work under it.
func TestRunSeccompEverywhere(t *testing.T) {
	t.Parallel()
	e := newExecutor(t)
	script := `
		set -e
		for p in /proc/[0-9]*; do
			echo "$(basename $p) $(grep '^Seccomp:' $p/status | tr -d '\t')"
		done
	`
	res, out := runScript(t, e, newSlot(t), script)
	if res.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", res.ExitCode, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasSuffix(line, "Seccomp:2") {
			t.Errorf("a process of the sandbox runs without the filter: %s", line)
		}
	}
	if !strings.HasPrefix(out, "1 ") {
		t.Errorf("the sandbox's init is not listed:\n%s", out)
	}

	t.Run("ordinary programs", func(t *testing.T) {
		script := `
			set -e
			sh -c 'echo shell' | cat
			ls / >/dev/null
			tar -cf /tmp/t.tar -C /workspace . && tar -tf /tmp/t.tar >/dev/null
			echo ok
		`
		if _, err := os.Stat("/usr/bin/git"); err == nil {
			script += `
				git init -q repo && cd repo
				echo hi > f && git add f
				git -c user.name=n -c user.email=e@x commit -qm one
				git log --oneline | wc -l
			`
		}
		res, out := runScript(t, e, newSlot(t), script)
		if res.ExitCode != 0 || !strings.HasPrefix(out, "shell\nok\n") {
			t.Errorf("exit %d, output:\n%s", res.ExitCode, out)
		}
	})
}
