package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// waitLimit bounds every poll in these tests.
const waitLimit = 30 * time.Second

// traversableDir returns a fresh temporary directory that every uid can
// traverse (t.TempDir's parent is 0700): sandboxes reach their files in it.
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

// uidBases gives each test its own sandbox uids (when the tests run as
// root), so that a test can look for processes left by its own jobs.
var uidBases atomic.Int32

// newBwrap returns a real bubblewrap executor with a fresh work root, or
// skips the test (fails it under CI=true) where sandboxes cannot run.
func newBwrap(t *testing.T) (*bwrap.Executor, bwrap.Options) {
	t.Helper()
	if _, err := os.Stat(bwrap.DefaultBwrapPath); err != nil {
		testenv.Missing(t, "bubblewrap is not installed at %s (apt-get install bubblewrap)", bwrap.DefaultBwrapPath)
	}
	opts := bwrap.Options{
		WorkRoot: filepath.Join(traversableDir(t), "work"),
		UIDBase:  200000 + 100*int(uidBases.Add(1)),
	}
	if err := bwrap.Check(t.Context(), opts, executor.Limits{}); err != nil {
		testenv.Missing(t, "bubblewrap cannot create sandboxes here: %v", err)
	}
	e, err := bwrap.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, opts
}

// recordingExecutor wraps an executor and records what ran: how each job
// ended, which slots were in use at once.
type recordingExecutor struct {
	executor.Executor

	mu         sync.Mutex
	running    map[int]string // slot → job id
	maxRunning int
	overlaps   []string
	specs      map[string]executor.Spec
	ended      map[string][]executor.Result // by job id, one per run
	errs       map[string]error
}

func record(e executor.Executor) *recordingExecutor {
	return &recordingExecutor{
		Executor: e, running: map[int]string{}, specs: map[string]executor.Spec{},
		ended: map[string][]executor.Result{}, errs: map[string]error{},
	}
}

func (r *recordingExecutor) Run(ctx context.Context, spec executor.Spec) (executor.Result, error) {
	r.mu.Lock()
	if other, busy := r.running[spec.Slot]; busy {
		r.overlaps = append(r.overlaps, "slot "+strconv.Itoa(spec.Slot)+": "+other+" and "+spec.JobID)
	}
	r.running[spec.Slot] = spec.JobID
	r.maxRunning = max(r.maxRunning, len(r.running))
	r.specs[spec.JobID] = spec
	r.mu.Unlock()
	res, err := r.Executor.Run(ctx, spec)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, spec.Slot)
	r.ended[spec.JobID] = append(r.ended[spec.JobID], res)
	if err != nil {
		r.errs[spec.JobID] = err
	}
	return res, err
}

// results returns the results of a job's runs so far.
func (r *recordingExecutor) results(id string) []executor.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ended[id])
}

func (r *recordingExecutor) isRunning(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.running {
		if j == id {
			return true
		}
	}
	return false
}

func (r *recordingExecutor) spec(id string) executor.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[id]
}

// funcExecutor is an in-test executor for tests where the sandbox does not
// matter: it runs a Go function as the workload, with the executor's
// contract for timeouts and causes.
type funcExecutor func(ctx context.Context, spec executor.Spec) int

func (funcExecutor) Name() string { return "func" }

func (f funcExecutor) Run(ctx context.Context, spec executor.Spec) (executor.Result, error) {
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, executor.ErrTimeout)
		defer cancel()
	}
	res := executor.Result{Started: time.Now(), ExitCode: f(ctx, spec)}
	res.Finished = time.Now()
	if ctx.Err() != nil {
		res.ExitCode, res.Cause = -1, context.Cause(ctx)
	}
	return res, nil
}

// testConfig is a Config for an agent of f with executor e; logs go to
// the test's output and to the returned buffer.
func testConfig(t *testing.T, serverURL string, f *fakeControlPlane, e executor.Executor) (Config, *testenv.Buffer) {
	t.Helper()
	logs := &testenv.Buffer{}
	h := slog.NewMultiHandler(
		slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
	)
	return Config{
		Server:     serverURL,
		StateDir:   filepath.Join(t.TempDir(), "state"),
		JoinToken:  f.joinToken("linux", "x64"),
		Name:       "test-agent",
		Labels:     []string{"linux"},
		Executor:   e,
		Version:    "test",
		Logger:     slog.New(h),
		MaxBackoff: 500 * time.Millisecond,
	}, logs
}

// runningAgent is an Agent whose Run runs in the background.
type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startAgent runs a new agent until the test ends (hard stop) or stop.
func startAgent(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ra.done)
		ra.err = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-ra.done
	})
	return ra
}

// wait waits for Run to return and returns its error.
func (ra *runningAgent) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-ra.done:
		return ra.err
	case <-time.After(waitLimit):
		t.Fatalf("Run did not return within %v", waitLimit)
		return nil
	}
}

// returned reports whether Run has returned.
func (ra *runningAgent) returned() bool {
	select {
	case <-ra.done:
		return true
	default:
		return false
	}
}

// handlerTransport serves requests with a handler in the calling
// goroutine, without a network: for tests in a synctest bubble, where time
// advances only when every goroutine is blocked on something other than
// I/O. A handler that aborts (http.ErrAbortHandler) is a dropped
// connection.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (resp *http.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler { //nolint:errorlint // the sentinel is panicked as is
				panic(p)
			}
			resp, err = nil, errors.New("connection reset by the fake server")
		}
	}()
	if r.Body != nil {
		defer r.Body.Close()
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// processesOf lists the host processes running as uid (not zombies).
func processesOf(t *testing.T, uid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		s := string(b)
		if strings.Contains(s, "\nUid:\t"+strconv.Itoa(uid)+"\t") && !strings.Contains(s, "\nState:\tZ") {
			out = append(out, e.Name())
		}
	}
	return out
}

// sh is a shell command line as argv.
func sh(script string) []string { return []string{"sh", "-c", script} }
