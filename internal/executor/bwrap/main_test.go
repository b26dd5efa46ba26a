package bwrap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// Some tests re-execute this test binary as a stand-in agent process; these
// variables tell it what to do.
const (
	childModeEnv     = "NIMBUS_BWRAP_TEST_CHILD"
	childWorkRootEnv = "NIMBUS_BWRAP_TEST_WORK_ROOT"
	childSlotEnv     = "NIMBUS_BWRAP_TEST_SLOT"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

// runChild is the stand-in agent. Its exit status is 0 when its own checks
// pass; it writes what it saw to stdout.
func runChild(mode string) int {
	slot, _ := strconv.Atoi(os.Getenv(childSlotEnv))
	e, err := New(Options{WorkRoot: os.Getenv(childWorkRootEnv)})
	if err != nil {
		fmt.Println(err)
		return 2
	}
	ctx := context.Background()
	switch mode {
	case "agent-killed":
		// Runs daemons until the parent kills this process.
		res, err := e.Run(ctx, executor.Spec{JobID: "orphan", Argv: sh(daemons + "sleep 1000"), Slot: slot, Output: os.Stdout})
		fmt.Printf("Run returned: %+v, %v\n", res, err)
		return 1
	case "unprivileged":
		res, err := e.Run(ctx, executor.Spec{
			JobID: "unpriv", Slot: slot, Output: os.Stdout,
			Argv: sh("id -u; echo hi > f; cat f; ! touch /usr/x 2>/dev/null && echo usr-ro; grep CapEff /proc/self/status"),
		})
		fmt.Printf("exit=%d cause=%v err=%v\n", res.ExitCode, res.Cause, err)
		res, err = e.Run(ctx, executor.Spec{
			JobID: "unpriv-timeout", Slot: slot, Output: io.Discard,
			Argv: sh(daemons + "sleep 1000"), Timeout: 300 * time.Millisecond,
		})
		fmt.Printf("timeout: exit=%d cause=%v err=%v\n", res.ExitCode, res.Cause, err)
		fmt.Printf("left=%d\n", countOwnProcesses())
		return 0
	default:
		fmt.Println("unknown mode", mode)
		return 2
	}
}

// countOwnProcesses counts the running processes of this process's uid,
// other than itself.
func countOwnProcesses() int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	uid := strconv.Itoa(os.Getuid())
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		s := string(b)
		if strings.Contains(s, "\nUid:\t"+uid+"\t") && !strings.Contains(s, "\nState:\tZ") {
			n++
		}
	}
	return n
}

// child starts this test binary as a stand-in agent.
func child(t *testing.T, binary, mode, workRoot string, slot int, cred *syscall.Credential) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(binary, "-test.run=^$")
	cmd.Env = []string{childModeEnv + "=" + mode, childWorkRootEnv + "=" + workRoot, childSlotEnv + "=" + strconv.Itoa(slot)}
	cmd.Stderr = t.Output()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = "/"
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

func TestRunDiesWithAgent(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	slot := nextSlot()
	cmd, lines := child(t, os.Args[0], "agent-killed", filepath.Join(traversableDir(t), "work"), slot, nil)
	defer cmd.Wait()
	defer cmd.Process.Kill()
	// The scanner's read ends when the child exits, so this cannot hang.
	for lines.Scan() && lines.Text() != "ready" {
		t.Logf("child: %s", lines.Text())
	}
	uid := DefaultUIDBase + slot
	if procs := processesOf(t, uid); len(procs) < 5 {
		t.Fatalf("sandbox processes before the kill: %v; want bwrap, its init, the job and its daemons", procs)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the stand-in agent exited normally")
	}
	waitNoProcessesOf(t, uid)
}

func TestRunAsUnprivilegedAgent(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	const nobody = 65534
	// The stand-in agent runs as nobody: its binary and work root must be
	// reachable by it.
	dir := traversableDir(t)
	binary := filepath.Join(dir, "agent.test")
	if err := copyExecutable(os.Args[0], binary); err != nil {
		t.Fatal(err)
	}
	workRoot := filepath.Join(dir, "work")
	if err := os.Mkdir(workRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(workRoot, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd, lines := child(t, binary, "unprivileged", workRoot, nextSlot(), &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}})
	var out strings.Builder
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stand-in agent: %v; output:\n%s", err, out.String())
	}
	want := "65534\nhi\nusr-ro\nCapEff:\t0000000000000000\nexit=0 cause=<nil> err=<nil>\n" +
		"timeout: exit=-1 cause=job timed out err=<nil>\nleft=0\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("stand-in agent output (-want +got):\n%s", diff)
	}
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}
