package docker_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/docker"
	"github.com/nimbus-build/nimbus/internal/executor/docker/dockertest"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/netpolicy/netpolicytest"
)

// One daemon, one image and one init binary for the package's tests.
var (
	setupOnce sync.Once
	daemon    *dockertest.Daemon
	image     string
	initBin   string
)

func setup(t *testing.T) (*dockertest.Daemon, string, string) {
	t.Helper()
	setupOnce.Do(func() {
		daemon = dockertest.Start(&packageTB{t})
		image = daemon.Busybox(&packageTB{t})
		initBin = dockertest.BuildStatic(&packageTB{t}, "github.com/nimbus-build/nimbus/internal/executor/docker/testinit")
	})
	if daemon == nil {
		t.Skip("no docker daemon")
	}
	return daemon, image, initBin
}

func newExecutor(t *testing.T, uidBase int) *docker.Executor {
	t.Helper()
	d, _, init := setup(t)
	root, err := os.MkdirTemp("/var/tmp", "nimbus-docker-work-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o711)
	t.Cleanup(func() { os.RemoveAll(root) })
	e, err := docker.New(t.Context(), docker.Options{Socket: d.Socket, WorkRoot: filepath.Join(root, "work"), UIDBase: uidBase, Init: init})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func run(t *testing.T, e *docker.Executor, script string, modify ...func(*executor.Spec)) (executor.Result, string) {
	t.Helper()
	var out bytes.Buffer
	spec := executor.Spec{JobID: strings.ReplaceAll(t.Name(), "/", "-"), Argv: []string{"sh", "-c", script}, Output: &out,
		Container: &executor.Container{Image: image}}
	for _, m := range modify {
		m(&spec)
	}
	res, err := e.Run(t.Context(), spec)
	if err != nil {
		t.Fatalf("Run: %v\noutput:\n%s", err, out.String())
	}
	return res, out.String()
}

func TestDockerRun(t *testing.T) {
	e := newExecutor(t, 170000)
	res, out := run(t, e, `echo "hello $GREETING"; echo oops >&2; id -u; pwd; ls /var/run/docker.sock 2>&1; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status; exit 3`,
		func(s *executor.Spec) { s.Env = map[string]string{"GREETING": "from a container"} })
	if res.ExitCode != 3 || res.Cause != nil {
		t.Fatalf("result %+v\n%s", res, out)
	}
	for _, want := range []string{"hello from a container\n", "oops\n", "170000\n", "/workspace\n", "No such file", "CapEff:\t0000000000000000",
		"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDockerCommandNotFound(t *testing.T) {
	e := newExecutor(t, 170010)
	var out bytes.Buffer
	res, err := e.Run(t.Context(), executor.Spec{JobID: "nf", Argv: []string{"no-such-command"}, Output: &out,
		Container: &executor.Container{Image: image}})
	if err != nil || res.ExitCode != 127 {
		t.Fatalf("%+v %v %q", res, err, out.String())
	}
}

func TestDockerReadOnlyRoot(t *testing.T) {
	e := newExecutor(t, 170020)
	res, out := run(t, e, `touch /etc/x 2>/dev/null && echo wrote-root; touch /workspace/x /tmp/x && echo wrote-workspace`,
		func(s *executor.Spec) { s.Container.ReadOnlyRoot = true })
	if res.ExitCode != 0 || strings.Contains(out, "wrote-root") || !strings.Contains(out, "wrote-workspace") {
		t.Fatalf("%+v %q", res, out)
	}
}

func TestDockerMemoryLimit(t *testing.T) {
	e := newExecutor(t, 170030)
	res, out := run(t, e, `dd if=/dev/zero of=/dev/null bs=200M count=1`,
		func(s *executor.Spec) { s.Limits = executor.Limits{Memory: 64 << 20, Pids: 64} })
	var le *executor.LimitError
	if !errors.As(res.Cause, &le) || le.Resource != "memory" {
		t.Fatalf("result %+v, want a memory limit error\n%s", res, out)
	}
}

func TestDockerTimeoutAndCancel(t *testing.T) {
	e := newExecutor(t, 170040)
	start := time.Now()
	res, _ := run(t, e, `sleep 300`, func(s *executor.Spec) { s.Timeout = time.Second })
	if !errors.Is(res.Cause, executor.ErrTimeout) || time.Since(start) > 30*time.Second {
		t.Fatalf("timeout: %+v after %v", res, time.Since(start))
	}
	ctx, cancel := context.WithCancelCause(t.Context())
	go func() { time.Sleep(500 * time.Millisecond); cancel(errors.New("cancelled by the test")) }()
	var out bytes.Buffer
	res, err := e.Run(ctx, executor.Spec{JobID: "cancel", Argv: []string{"sleep", "300"}, Output: &out, Container: &executor.Container{Image: image}})
	if err != nil || res.Cause == nil || !strings.Contains(res.Cause.Error(), "cancelled by the test") {
		t.Fatalf("cancel: %+v %v", res, err)
	}
	// Nothing of either is left.
	if out, _ := daemon.Docker(t.Context(), "ps", "-aq", "--filter", "label=build.nimbus.job"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left: %s", out)
	}
}

// A new executor on the same work root removes what a crashed one left.
func TestDockerSweepsLeftovers(t *testing.T) {
	d, img, _ := setup(t)
	e := newExecutor(t, 170050)
	ctx, cancel := context.WithCancel(t.Context())
	started := make(chan struct{})
	done := make(chan struct{})
	w := &signalWriter{marker: "up", ready: started}
	go func() {
		defer close(done)
		e.Run(ctx, executor.Spec{JobID: "left", Argv: []string{"sh", "-c", "echo up; sleep 300"}, Output: w,
			Container: &executor.Container{Image: img}})
	}()
	<-started
	// The agent "crashes": its container stays (the daemon keeps it), and
	// a new executor with the same work root starts.
	ids, _ := d.Docker(t.Context(), "ps", "-q", "--filter", "label=build.nimbus.job=left")
	if strings.TrimSpace(ids) == "" {
		t.Fatal("the job's container is not running")
	}
	root := e.WorkRootForTest()
	if _, err := docker.New(t.Context(), docker.Options{Socket: d.Socket, WorkRoot: root, UIDBase: 170050, Init: initBin}); err != nil {
		t.Fatal(err)
	}
	if out, _ := d.Docker(t.Context(), "ps", "-aq", "--filter", "label=build.nimbus.job=left"); strings.TrimSpace(out) != "" {
		t.Errorf("the crashed agent's container survived the new executor: %s", out)
	}
	cancel()
	<-done
}

// The job's network, in the container: its egress policy holds there as
// in a bubblewrap job.
func TestDockerNetwork(t *testing.T) {
	w := netpolicytest.New(t)
	e := newExecutor(t, 170060)
	m, err := netpolicy.NewManager(netpolicy.Config{Subnet4: netip.MustParsePrefix("10.220.0.0/16"), Upstream: []string{w.DNS}})
	if err != nil {
		t.Fatal(err)
	}
	var sb *netpolicy.Sandbox
	tool := netpolicytest.BuildNettool(t)
	res, out := run(t, e, `
		/nettool/nettool allowed get http://allowed.test/
		/nettool/nettool metadata get http://169.254.169.254/
		/nettool/nettool rawip connect tcp 198.51.100.8:80
		/nettool/nettool denied-name dns $(grep nameserver /etc/resolv.conf | cut -d' ' -f2):53 udp other.test A
		ip route del default 2>&1; echo "route: $?"`,
		func(s *executor.Spec) {
			s.Binds = []executor.Bind{{Source: tool, Target: "/nettool", ReadOnly: true}}
			s.BuildNetwork = func(ctx context.Context, fd int) (executor.Network, error) {
				var err error
				sb, err = m.Prepare(ctx, netpolicy.Spec{ID: "docker", NetnsFD: fd,
					Policy: netpolicy.Policy{Mode: netpolicy.ModeAllowList, Allow: []string{"allowed.test"}}})
				return sb, err
			}
		})
	if sb == nil {
		t.Fatalf("no network built: %+v\n%s", res, out)
	}
	rep, err := sb.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"allowed: ok 200 hello from 198.51.100.7", "metadata: err", "rawip: err", "denied-name: ok rcode=NXDOMAIN",
		"Operation not permitted"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if len(rep.Refused) == 0 {
		t.Errorf("report: %+v", rep)
	}
}

type signalWriter struct {
	marker string
	ready  chan struct{}
	mu     sync.Mutex
	buf    bytes.Buffer
	once   sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

// packageTB lets the package's shared daemon outlive the test that started
// it: its cleanups run at the end of the test binary.
type packageTB struct{ *testing.T }

func (p *packageTB) Cleanup(f func()) { cleanups = append(cleanups, f) }
func (p *packageTB) TempDir() string {
	d, err := os.MkdirTemp("", "nimbus-docker-pkg-")
	if err != nil {
		p.T.Fatal(err)
	}
	cleanups = append(cleanups, func() { os.RemoveAll(d) })
	return d
}

var cleanups []func()

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	os.Exit(code)
}

// The job's output comes through the executor's named pipe, whole, in
// order, stdout and stderr interleaved as written; a job that writes more
// than a pipe holds is never cut short.
func TestDockerLargeOutput(t *testing.T) {
	e := newExecutor(t, 170070)
	res, out := run(t, e, `head -c 1000000 /dev/zero | tr '\0' x; echo; echo to-stderr >&2; echo last`)
	if res.ExitCode != 0 || len(out) != 1000000+1+len("to-stderr\nlast\n") || !strings.HasSuffix(out, "x\nto-stderr\nlast\n") {
		t.Fatalf("exit %d, %d bytes of output, ending %q", res.ExitCode, len(out), out[max(0, len(out)-40):])
	}
}
