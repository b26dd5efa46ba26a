package bwrap

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// The test binary re-executes itself as a stand-in agent (see
// TestRunDiesWithParent and TestCheckUserNamespacesDisabled); these
// variables tell it what to do.
const (
	childModeEnv = "NIMBUS_BWRAP_TEST_CHILD"
	childRootEnv = "NIMBUS_BWRAP_TEST_WORKROOT"
	childBaseEnv = "NIMBUS_BWRAP_TEST_UIDBASE"
	childSlotEnv = "NIMBUS_BWRAP_TEST_SLOT"
	childArgEnv  = "NIMBUS_BWRAP_TEST_ARG"
	// childTokenEnv is passed on to the job as TOKEN.
	childTokenEnv = "NIMBUS_BWRAP_TEST_TOKEN"
	// childDiskEnv is the job's disk limit in bytes.
	childDiskEnv = "NIMBUS_BWRAP_TEST_DISK"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childModeEnv) {
	case "":
		code := m.Run()
		if probeDir != "" {
			os.RemoveAll(probeDir)
		}
		os.Exit(code)
	case "run":
		os.Exit(childRun())
	case "check":
		os.Exit(childCheck())
	case "runnet":
		os.Exit(childRunNetwork())
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(2)
	}
}

// childRun runs the shell script in childArgEnv in a sandbox, its output
// on stdout, until it is killed.
func childRun() int {
	base, _ := strconv.Atoi(os.Getenv(childBaseEnv))
	slot, _ := strconv.Atoi(os.Getenv(childSlotEnv))
	disk, _ := strconv.ParseInt(os.Getenv(childDiskEnv), 10, 64)
	e, err := New(Options{WorkRoot: os.Getenv(childRootEnv), UIDBase: base})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer e.Close()
	res, err := e.Run(context.Background(), executor.Spec{
		JobID:  "child",
		Argv:   []string{"sh", "-c", os.Getenv(childArgEnv)},
		Env:    map[string]string{"TOKEN": os.Getenv(childTokenEnv)},
		Output: os.Stdout,
		Slot:   slot,
		Limits: executor.Limits{Disk: disk},
	})
	fmt.Printf("result: %+v, %v\n", res, err)
	return 0
}

// childCheck prints what Check says.
func childCheck() int {
	err := Check(context.Background(), Options{WorkRoot: os.Getenv(childRootEnv)}, executor.Limits{})
	fmt.Printf("check: %v\n", err)
	return 0
}

// unavailable skips a test whose host lacks what it needs, or fails it
// under CI=true, where the install script must have provided it.
func unavailable(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

var (
	checkOnce sync.Once
	checkErr  error
)

// requireBwrap skips (or, under CI=true, fails) the test unless bubblewrap
// is installed and can create sandboxes here.
func requireBwrap(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultBwrapPath); err != nil {
		unavailable(t, "bubblewrap is not installed at "+DefaultBwrapPath+": apt-get install bubblewrap")
	}
	checkOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nimbus-bwrap-check-")
		if err != nil {
			checkErr = err
			return
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o711); err != nil {
			checkErr = err
			return
		}
		checkErr = Check(context.Background(), Options{WorkRoot: filepath.Join(dir, "work"), UIDBase: testUIDBase}, executor.Limits{})
	})
	if checkErr != nil {
		unavailable(t, "bubblewrap cannot create sandboxes here: "+checkErr.Error())
	}
}

// testUIDBase keeps the uids of concurrent test processes apart.
var testUIDBase = 200000 + (os.Getpid()%4096)*256

var lastSlot atomic.Int32

// newSlot returns a slot no other test of this process uses, so that the
// uid of its sandbox identifies its processes.
func newSlot(t *testing.T) int {
	s := int(lastSlot.Add(1))
	if s >= 256 {
		t.Fatal("out of test slots")
	}
	return s
}

// traversableDir returns a fresh temporary directory that it and its
// parents up to the system's temp directory let others traverse, as a
// WorkRoot's parents must.
func traversableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tmp := filepath.Clean(os.TempDir())
	for p := dir; strings.HasPrefix(p, tmp+"/"); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newExecutor returns an Executor with a fresh WorkRoot, after checking
// that bubblewrap works.
func newExecutor(t *testing.T, modify ...func(*Options)) *Executor {
	t.Helper()
	requireBwrap(t)
	opts := Options{WorkRoot: filepath.Join(traversableDir(t), "work"), UIDBase: testUIDBase}
	for _, m := range modify {
		m(&opts)
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// runScript runs a shell script in a sandbox of slot and returns its result
// and output. Any error from Run fails the test.
func runScript(t *testing.T, e *Executor, slot int, script string, modify ...func(*executor.Spec)) (executor.Result, string) {
	t.Helper()
	var out bytes.Buffer
	spec := executor.Spec{
		JobID:  t.Name(),
		Argv:   []string{"sh", "-c", script},
		Output: &out,
		Slot:   slot,
	}
	for _, m := range modify {
		m(&spec)
	}
	res, err := e.Run(t.Context(), spec)
	if err != nil {
		t.Fatalf("Run: %v\noutput:\n%s", err, out.String())
	}
	return res, out.String()
}

// sandboxUID is the uid whose processes are a slot's, or -1 when the tests
// do not run as root and the sandbox shares the test's own uid.
func sandboxUID(t *testing.T, e *Executor, slot int) int {
	t.Helper()
	if !e.asRoot {
		return -1
	}
	uid, _, err := e.Identity(slot)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

var lastToken atomic.Int64

// newToken returns a sleep duration no other process uses, to find the
// processes of one test on the host: "sleep <token>" sleeps ~1000 s.
func newToken() string {
	return fmt.Sprintf("1000.%d%06d", os.Getpid(), lastToken.Add(1))
}

// liveProcesses lists the host's live (not zombie) processes that run as
// uid (unless uid < 0) or whose command line holds token (unless empty), as
// "pid uid command line".
func liveProcesses(t *testing.T, uid int, token string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStatus(pid)
		if err != nil || st.state == "Z" {
			continue // gone meanwhile, or dead and waiting to be reaped
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd := strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		if (uid >= 0 && st.uids[0] == uid) || (token != "" && strings.Contains(cmd, token)) {
			found = append(found, fmt.Sprintf("%d %d %s", pid, st.uids[0], cmd))
		}
	}
	return found
}

// procStatus is what the tests read of /proc/<pid>/status.
type procStatus struct {
	state string
	ppid  int
	uids  [4]int // real, effective, saved, filesystem
}

func readStatus(pid int) (procStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, err
	}
	var st procStatus
	for _, line := range strings.Split(string(data), "\n") {
		key, value, _ := strings.Cut(line, ":")
		f := strings.Fields(value)
		switch {
		case key == "State" && len(f) > 0:
			st.state = f[0]
		case key == "PPid" && len(f) > 0:
			st.ppid, _ = strconv.Atoi(f[0])
		case key == "Uid" && len(f) == 4:
			for i := range f {
				st.uids[i], _ = strconv.Atoi(f[i])
			}
		}
	}
	return st, nil
}

// watchWriter collects output and closes ready when it sees marker.
type watchWriter struct {
	marker string
	ready  chan struct{}

	mu   sync.Mutex
	buf  bytes.Buffer
	once sync.Once
}

func newWatchWriter(marker string) *watchWriter {
	return &watchWriter{marker: marker, ready: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
