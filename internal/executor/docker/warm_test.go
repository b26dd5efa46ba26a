package docker_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/docker"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/netpolicy/netpolicytest"
)

var warmLimits = executor.Limits{Memory: 256 << 20, Pids: 128}

// newWarmExecutor is an executor keeping slots 0 and 1 warm with the
// test image.
func newWarmExecutor(t *testing.T, uidBase int) (*docker.Executor, *warmpool.Metrics) {
	t.Helper()
	d, img, init := setup(t)
	root, err := os.MkdirTemp("/var/tmp", "nimbus-docker-work-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o711)
	t.Cleanup(func() { os.RemoveAll(root) })
	m, err := warmpool.NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := docker.New(t.Context(), docker.Options{Socket: d.Socket, WorkRoot: filepath.Join(root, "work"), UIDBase: uidBase, Init: init,
		Warm: []docker.Warm{{Image: img, Slots: 2, Limits: warmLimits}}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	waitWarm(t, e)
	return e, m
}

func waitWarm(t *testing.T, e *docker.Executor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := e.WaitWarm(ctx); err != nil {
		t.Fatalf("warm pool not full: %v", err)
	}
}

func warmContainers(t *testing.T) []string {
	t.Helper()
	out, err := daemon.Docker(t.Context(), "ps", "-aq", "--no-trunc", "--filter", "label=build.nimbus.warm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// A job takes a ready container, which is then replaced by a new one: the
// next job in the slot never sees what the first left, in its workspace,
// /tmp or processes; a job that does not match the pool makes its own.
func TestDockerWarmPool(t *testing.T) {
	e, m := newWarmExecutor(t, 170100)
	pool := "docker:" + image
	if got := m.Ready(pool); got != 2 {
		t.Fatalf("ready = %v, want 2", got)
	}
	before := warmContainers(t)
	if len(before) != 2 {
		t.Fatalf("warm containers: %v", before)
	}
	warm := func(s *executor.Spec) { s.Limits = warmLimits }
	res, out := run(t, e, `echo hello from warm; id -u; ls -A /workspace; echo secret > /workspace/left; echo tmp > /tmp/left; (sleep 300 &) ; exit 4`, warm)
	if res.ExitCode != 4 || !strings.Contains(out, "hello from warm\n170100\n") {
		t.Fatalf("result %+v:\n%s", res, out)
	}
	if got := m.Takes(pool, "hit"); got != 1 {
		t.Fatalf("hits = %v, want 1", got)
	}
	waitWarm(t, e)
	after := warmContainers(t)
	if len(after) != 2 {
		t.Fatalf("warm containers after the job: %v", after)
	}
	replaced := 0
	for _, id := range after {
		if !strings.Contains(strings.Join(before, " "), id) {
			replaced++
		}
	}
	if replaced != 1 {
		t.Fatalf("want one new warm container, before %v after %v", before, after)
	}
	res, out = run(t, e, `ls -A /workspace /tmp; ps -o args | grep -c '^sleep' ; echo done`, warm)
	if res.ExitCode != 0 || strings.Contains(out, "left") || !strings.Contains(out, "\n0\ndone") {
		t.Fatalf("the second job sees the first's leftovers: %+v\n%s", res, out)
	}
	if got := float64(m.Refills(pool)); got < 3 {
		t.Errorf("refills observed = %v, want ≥ 3 (two at start, one after the first job)", got)
	}

	// Jobs the pool was not made for make their own container.
	misses := []func(*executor.Spec){
		func(s *executor.Spec) {}, // no limits: not the pool's
		func(s *executor.Spec) { warm(s); s.Container.ReadOnlyRoot = true },
		func(s *executor.Spec) { warm(s); s.Slot = 2 },
	}
	for i, m := range misses {
		res, out := run(t, e, `echo own container`, m)
		if res.ExitCode != 0 || !strings.Contains(out, "own container") {
			t.Fatalf("miss %d: %+v %s", i, res, out)
		}
	}
	if got := m.Takes(pool, "miss"); got != 3 {
		t.Errorf("misses = %v, want 3", got)
	}
	if got := m.Takes(pool, "hit"); got != 2 {
		t.Errorf("hits = %v, want 2", got)
	}

	// Close removes the ready ones.
	waitWarm(t, e)
	e.Close()
	if left := warmContainers(t); len(left) != 0 {
		t.Fatalf("warm containers left after Close: %v", left)
	}
}

// A warm container that died while it waited is not handed to a job: the
// job makes its own, and the pool makes a new one.
func TestDockerWarmDeadContainer(t *testing.T) {
	e, m := newWarmExecutor(t, 170110)
	out, err := daemon.Docker(t.Context(), "ps", "-q", "--filter", "label=build.nimbus.warm=0", "--filter", "label=build.nimbus.owner")
	if err != nil || len(strings.Fields(out)) != 1 {
		t.Fatalf("slot 0's warm container: %q %v", out, err)
	}
	if _, err := daemon.Docker(t.Context(), "kill", strings.TrimSpace(out)); err != nil {
		t.Fatal(err)
	}
	res, got := run(t, e, `echo still runs`, func(s *executor.Spec) { s.Limits = warmLimits })
	if res.ExitCode != 0 || !strings.Contains(got, "still runs") {
		t.Fatalf("%+v %s", res, got)
	}
	pool := "docker:" + image
	if hits, misses := m.Takes(pool, "hit"),
		m.Takes(pool, "miss"); hits != 0 || misses != 1 {
		t.Fatalf("hits %v misses %v, want 0 and 1", hits, misses)
	}
	waitWarm(t, e)
}

// A warm container's network is built for its job at the lease: the
// job's egress policy holds in it as in a cold one.
func TestDockerWarmNetwork(t *testing.T) {
	w := netpolicytest.New(t)
	e, metrics := newWarmExecutor(t, 170120)
	m, err := netpolicy.NewManager(netpolicy.Config{Subnet4: netip.MustParsePrefix("10.221.0.0/16"), Upstream: []string{w.DNS}})
	if err != nil {
		t.Fatal(err)
	}
	var sb *netpolicy.Sandbox
	var out bytes.Buffer
	res, err := e.Run(t.Context(), executor.Spec{JobID: "warm-net", Output: &out, Limits: warmLimits,
		Container: &executor.Container{Image: image},
		Argv: []string{"sh", "-c", `wget -q -O- http://allowed.test/; echo
			wget -q -T 3 -O- http://169.254.169.254/ >/dev/null 2>&1 || echo metadata refused
			wget -q -T 3 -O- http://other.test/ >/dev/null 2>&1 || echo other refused
			cat /etc/resolv.conf`},
		BuildNetwork: func(ctx context.Context, fd int) (executor.Network, error) {
			sb, err = m.Prepare(ctx, netpolicy.Spec{ID: "warm-net", NetnsFD: fd,
				Policy: netpolicy.Policy{Mode: netpolicy.ModeAllowList, Allow: []string{"allowed.test"}}})
			return sb, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	if sb == nil {
		t.Fatalf("no network built: %+v\n%s", res, out.String())
	}
	sb.Close()
	if got := metrics.Takes("docker:"+image, "hit"); got != 1 {
		t.Fatalf("hits = %v, want 1 (the job ran cold)", got)
	}
	for _, want := range []string{"hello from 198.51.100.7", "metadata refused", "other refused", "nameserver "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
