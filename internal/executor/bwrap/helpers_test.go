package bwrap

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// waitLimit bounds every poll in these tests.
const waitLimit = 20 * time.Second

// requireSandbox skips a test that needs real bubblewrap and root (to run
// sandboxes as their own uids) where they are missing, and fails it under
// CI=true, where `make test` provides both.
func requireSandbox(t *testing.T) {
	t.Helper()
	var missing string
	if _, err := os.Stat(DefaultPath); err != nil {
		missing = "bubblewrap is not installed at " + DefaultPath + " (apt-get install bubblewrap)"
	} else if os.Geteuid() != 0 {
		missing = "these tests run sandboxes as their own uids and need root"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(missing)
	}
	t.Skip(missing)
}

// slots hands each test its own slot, hence its own sandbox uid, so that
// parallel tests can look for leftover processes by uid.
var slots atomic.Int32

func nextSlot() int { return int(slots.Add(1)) }

// traversableDir returns a fresh temporary directory that every uid can
// traverse (t.TempDir's parent is 0700).
func traversableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newTestExecutor returns an executor with a fresh work root.
func newTestExecutor(t *testing.T, modify ...func(*Options)) *Executor {
	t.Helper()
	opts := Options{
		WorkRoot: filepath.Join(traversableDir(t), "work"),
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range modify {
		m(&opts)
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs spec to completion and returns its result and output. It fails
// the test if Run returns an error or leaves a process of the sandbox's
// uid behind.
func run(t *testing.T, e *Executor, spec executor.Spec) (executor.Result, string) {
	t.Helper()
	return runCtx(t, t.Context(), e, spec)
}

func runCtx(t *testing.T, ctx context.Context, e *Executor, spec executor.Spec) (executor.Result, string) {
	t.Helper()
	out := &syncBuffer{}
	if spec.Output == nil {
		spec.Output = out
	}
	res, err := e.Run(ctx, spec)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	uid, _ := e.IDs(spec.Slot)
	if left := processesOf(t, uid); len(left) > 0 {
		t.Errorf("processes of uid %d left after Run returned: %v", uid, left)
	}
	return res, out.String()
}

// processesOf lists the host processes (pid and command) with uid as real,
// effective, saved or filesystem uid. Zombies are left out: they run
// nothing, and the sandbox's init is one until its new parent, the host's
// init, reaps it.
func processesOf(t *testing.T, uid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.Itoa(uid)
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue // it exited meanwhile
		}
		var name string
		var zombie, match bool
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			switch {
			case len(f) > 1 && f[0] == "Name:":
				name = f[1]
			case len(f) > 1 && f[0] == "State:":
				zombie = f[1] == "Z"
			case len(f) > 1 && f[0] == "Uid:":
				match = slices.Contains(f[1:], want)
			}
		}
		if match && !zombie {
			out = append(out, e.Name()+" "+name)
		}
	}
	return out
}

// waitNoProcessesOf polls until no host process runs as uid.
func waitNoProcessesOf(t *testing.T, uid int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		left := processesOf(t, uid)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				if pid, err := strconv.Atoi(strings.Fields(p)[0]); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL) // leave nothing behind
				}
			}
			t.Fatalf("processes of uid %d still running after %v: %v", uid, waitLimit, left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is an output sink tests can read while a job writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the output contains s, or fails the test once done
// is closed (the job ended) or the limit passes.
func (b *syncBuffer) waitFor(t *testing.T, s string, done <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(b.String(), s) {
		select {
		case <-done:
			if strings.Contains(b.String(), s) {
				return
			}
			t.Fatalf("job ended without writing %q; output:\n%s", s, b.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output after %v; output:\n%s", s, waitLimit, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startJob runs spec in the background; wait returns its result.
func startJob(t *testing.T, ctx context.Context, e *Executor, spec executor.Spec) (out *syncBuffer, done chan struct{}, wait func() executor.Result) {
	t.Helper()
	out = &syncBuffer{}
	spec.Output = out
	done = make(chan struct{})
	var res executor.Result
	var err error
	go func() {
		defer close(done)
		res, err = e.Run(ctx, spec)
	}()
	return out, done, func() executor.Result {
		t.Helper()
		<-done
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		uid, _ := e.IDs(spec.Slot)
		if left := processesOf(t, uid); len(left) > 0 {
			t.Errorf("processes of uid %d left after Run returned: %v", uid, left)
		}
		return res
	}
}
