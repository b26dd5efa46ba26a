package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
	"github.com/nimbus-build/nimbus/internal/executor/docker"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
)

// SandboxOptions configures `nimbus bench sandbox`.
type SandboxOptions struct {
	Runs        int
	Concurrency int
	Duration    time.Duration
	WorkDir     string
	Limits      executor.Limits
	DockerRuns  int
	// The Docker executor's rows: its daemon's socket and a local image
	// with sh (no socket: no rows).
	DockerSocket   string
	ContainerImage string
	ContainerRuns  int
}

// SandboxMain is `nimbus bench sandbox`.
func SandboxMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := SandboxOptions{Limits: executor.Limits{Memory: 1 << 30, Pids: 8192}}
	fs := flag.NewFlagSet("nimbus bench sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Runs, "runs", 100, "jobs per latency row, one at a time")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "jobs at once in the throughput rows")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "length of each throughput row")
	fs.StringVar(&o.WorkDir, "work-dir", "", "work root of the sandboxes (default: a temporary directory under /var/tmp)")
	disk := fs.Int64("job-disk-mib", 0, "disk limit of each job in MiB (0: none; one ext4 image per slot, made once)")
	fs.IntVar(&o.DockerRuns, "docker-runs", 10, "jobs with a Docker daemon of their own (0: skip those rows; needs podman and docker)")
	fs.StringVar(&o.DockerSocket, "docker-socket", "", "a Docker Engine's socket: adds the Docker executor's rows, cold and warm (this binary must be static, as make build makes it)")
	fs.StringVar(&o.ContainerImage, "container-image", "", "a local image with sh for the Docker executor's rows (e.g. one made with docker import of a busybox root)")
	fs.IntVar(&o.ContainerRuns, "container-runs", 20, "jobs per Docker executor row, one at a time")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nimbus bench sandbox [flags]

Measures the job sandbox as the agent runs it (bubblewrap, the syscall filter,
a cgroup with memory and pids limits), without and with the job's network
(namespace, veth, nftables tables, resolver): lease → first instruction of
the workload (the time from the agent holding a lease to a bash workload
printing $EPOCHREALTIME, bash's own start included), the network's setup and
teardown, jobs per second sustained, and jobs with a Docker daemon of their
own (daemon ready, cold and taken warm from a pool of one; a build, a
run). With --docker-socket, the Docker
executor: lease → the workload's first output (its network built in the
container, an offline policy), cold (the container made for the job) and
warm (taken from a pool of one, refilled between jobs). Needs root. The
control plane's calls are not included (see nimbus bench jobs).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Limits.Disk = *disk << 20
	rows, err := benchSandbox(ctx, o, stderr)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SANDBOX\tMETRIC\tVALUE\tGOAL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.engine, r.metric, r.value, r.goal)
	}
	tw.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "nimbus bench sandbox: %v\n", err)
		return 1
	}
	return 0
}

func benchSandbox(ctx context.Context, o SandboxOptions, stderr io.Writer) ([]row, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (sandbox uids, cgroups, network namespaces)")
	}
	dir := o.WorkDir
	if dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "nimbus-bench-sandbox-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	ex, err := bwrap.New(bwrap.Options{WorkRoot: filepath.Join(dir, "jobs"), UIDBase: 230000})
	if err != nil {
		return nil, err
	}
	defer ex.Close()
	nets, err := netpolicy.NewManager(netpolicy.Config{Upstream: []string{"127.0.0.1:53"}})
	if err != nil {
		return nil, err
	}
	b := &sandboxBench{ex: ex, nets: nets, limits: o.Limits}
	// Warm up: the first runs make each slot's cgroups (and disk images).
	for slot := range o.Concurrency {
		if _, err := b.job(ctx, slot, false); err != nil {
			return nil, err
		}
	}
	var rows []row
	var base sample
	for _, withNet := range []bool{false, true} {
		name := "bwrap"
		if withNet {
			name = "bwrap + network policy"
		}
		fmt.Fprintf(stderr, "bench sandbox: %s, %d jobs one at a time…\n", name, o.Runs)
		var s sample
		for range o.Runs {
			t, err := b.job(ctx, 0, withNet)
			if err != nil {
				return rows, err
			}
			s.add(t)
		}
		first := s.quantiles(func(t jobTimes) time.Duration { return t.first })
		goal := ""
		if withNet {
			goal = "p50 < 80 ms, < 30 ms over none"
			added := s.median(func(t jobTimes) time.Duration { return t.first }) - base.median(func(t jobTimes) time.Duration { return t.first })
			rows = append(rows, row{name, "lease → first instruction", first, goal},
				row{name, "added by the network, p50", ms(added), "< 30 ms"},
				row{name, "network setup, p50 / p99", s.quantiles(func(t jobTimes) time.Duration { return t.netUp }), ""},
				row{name, "network teardown (+ report), p50 / p99", s.quantiles(func(t jobTimes) time.Duration { return t.netDown }), ""})
		} else {
			base = s
			rows = append(rows, row{name, "lease → first instruction", first, ""})
		}
		rows = append(rows, row{name, "job end → resources released, p50 / p99", s.quantiles(func(t jobTimes) time.Duration { return t.teardown }), ""})
	}
	for _, withNet := range []bool{false, true} {
		name := "bwrap"
		if withNet {
			name = "bwrap + network policy"
		}
		fmt.Fprintf(stderr, "bench sandbox: %s, %d at once for %v…\n", name, o.Concurrency, o.Duration)
		n, err := b.throughput(ctx, o.Concurrency, o.Duration, withNet)
		if err != nil {
			return rows, err
		}
		rows = append(rows, row{name, fmt.Sprintf("jobs/s sustained, %d at once", o.Concurrency),
			fmt.Sprintf("%.1f", float64(n)/o.Duration.Seconds()), ""})
	}
	if o.DockerRuns > 0 {
		fmt.Fprintf(stderr, "bench sandbox: jobs with a Docker daemon, %d one at a time…\n", o.DockerRuns)
		var ready, build, run []time.Duration
		for range o.DockerRuns {
			r, bu, ru, err := b.dockerJob(ctx)
			if err != nil {
				return rows, err
			}
			ready, build, run = append(ready, r), append(build, bu), append(run, ru)
		}
		name := "bwrap + network + docker"
		rows = append(rows, row{name, "lease → the job's daemon answers (docker info), cold, p50 / p99", durQuantiles(ready), "p50 < 1.5 s"},
			row{name, "docker build, 3 layers, p50 / p99", durQuantiles(build), ""},
			row{name, "docker run --rm of it, p50 / p99", durQuantiles(run), ""})
		first, warm, again, err := b.warmDockerReady(ctx, o, dir, stderr)
		if err != nil {
			return rows, err
		}
		rows = append(rows, row{name, "lease → first instruction, warm, p50 / p99", durQuantiles(first), ""},
			row{name, "lease → the job's daemon answers (docker info), warm, p50 / p99", durQuantiles(warm), "p50 < 50 ms"},
			row{name, "a second docker info (client and daemon alone), p50 / p99", durQuantiles(again), ""})
	}
	if o.DockerSocket != "" {
		crows, err := benchContainers(ctx, o, dir, nets, stderr)
		rows = append(rows, crows...)
		if err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// benchContainers measures the Docker executor, cold then warm.
func benchContainers(ctx context.Context, o SandboxOptions, dir string, nets *netpolicy.Manager, stderr io.Writer) ([]row, error) {
	if o.ContainerImage == "" {
		return nil, errors.New("--docker-socket needs --container-image (a local image with sh)")
	}
	limits := o.Limits
	limits.Disk = 0
	var rows []row
	for _, warm := range []bool{false, true} {
		opts := docker.Options{Socket: o.DockerSocket, WorkRoot: filepath.Join(dir, "containers"), UIDBase: 231000}
		name, goal := "docker executor + network, cold", "p50 < 700 ms"
		if warm {
			opts.Warm = []docker.Warm{{Image: o.ContainerImage, Slots: 1, Limits: limits}}
			name, goal = "docker executor + network, warm", "p50 < 50 ms"
		}
		ex, err := docker.New(ctx, opts)
		if err != nil {
			return rows, err
		}
		fmt.Fprintf(stderr, "bench sandbox: %s, %d jobs one at a time…\n", name, o.ContainerRuns)
		var first []time.Duration
		for range o.ContainerRuns {
			if err = ex.WaitWarm(ctx); err != nil {
				break
			}
			var d time.Duration
			if d, err = containerJob(ctx, ex, nets, o.ContainerImage, limits); err != nil {
				break
			}
			first = append(first, d)
		}
		ex.Close()
		if err != nil {
			return rows, err
		}
		rows = append(rows, row{name, "lease → first output, p50 / p99", durQuantiles(first), goal})
	}
	return rows, nil
}

// containerJob runs one job in the Docker executor with an offline
// network and returns the time from Run to its first output.
func containerJob(ctx context.Context, ex *docker.Executor, nets *netpolicy.Manager, image string, limits executor.Limits) (time.Duration, error) {
	var sb *netpolicy.Sandbox
	defer func() {
		if sb != nil {
			sb.Close()
		}
	}()
	out := &firstWrite{}
	t0 := time.Now()
	res, err := ex.Run(ctx, executor.Spec{JobID: "bench-container", Limits: limits, Output: out,
		Container: &executor.Container{Image: image}, Argv: []string{"sh", "-c", "echo started"},
		BuildNetwork: func(ctx context.Context, fd int) (executor.Network, error) {
			var err error
			sb, err = nets.Prepare(ctx, netpolicy.Spec{ID: "bench-container", NetnsFD: fd, Policy: netpolicy.Policy{Mode: netpolicy.ModeOffline}})
			return sb, err
		}})
	if err == nil && (res.ExitCode != 0 || res.Cause != nil || out.at.IsZero()) {
		err = fmt.Errorf("container workload: exit %d, %v: %q", res.ExitCode, res.Cause, out.buf.String())
	}
	if err != nil {
		return 0, err
	}
	return out.at.Sub(t0), nil
}

// firstWrite keeps what is written and when the first byte came.
type firstWrite struct {
	mu  sync.Mutex
	at  time.Time
	buf bytes.Buffer
}

func (w *firstWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.at.IsZero() && len(p) > 0 {
		w.at = time.Now()
	}
	return w.buf.Write(p)
}

func durQuantiles(d []time.Duration) string {
	var s sample
	for _, x := range d {
		s.add(jobTimes{first: x})
	}
	return s.quantiles(func(t jobTimes) time.Duration { return t.first })
}

// dockerScript times a job's daemon: ready, a build of a three-layer
// image from the host's busybox, and a run of it.
const dockerScript = `set -e
export PATH=/usr/bin:$PATH
docker info >/dev/null 2>&1; echo $EPOCHREALTIME
mkdir ctx && cp /usr/bin/busybox ctx/
printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["true"]\n' > ctx/Dockerfile
docker build -q -t app ctx >/dev/null; echo $EPOCHREALTIME
docker run --rm app; echo $EPOCHREALTIME`

// warmDockerReady measures jobs taking a warm sandbox (a pool of one,
// refilled between jobs): lease → the job's first instruction, lease →
// the daemon answers docker info, and what a second docker info takes.
func (b *sandboxBench) warmDockerReady(ctx context.Context, o SandboxOptions, dir string, stderr io.Writer) (first, ready, again []time.Duration, err error) {
	ex, err := bwrap.New(bwrap.Options{WorkRoot: filepath.Join(dir, "warm-jobs"), UIDBase: 232000, WarmDocker: 1, WarmLimits: b.limits})
	if err != nil {
		return nil, nil, nil, err
	}
	defer ex.Close()
	fmt.Fprintf(stderr, "bench sandbox: jobs with a warm Docker daemon, %d one at a time…\n", o.DockerRuns)
	for range o.DockerRuns {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := ex.WaitWarm(wctx)
		cancel()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("warm sandbox: %w", err)
		}
		var sb *netpolicy.Sandbox
		var out bytes.Buffer
		t0 := time.Now()
		res, err := ex.Run(ctx, executor.Spec{JobID: "bench-docker-warm", Slot: 0, Limits: b.limits, Docker: true, Output: &out,
			Argv: []string{"/bin/bash", "--norc", "--noprofile", "-c",
				"echo $EPOCHREALTIME; docker info >/dev/null 2>&1; echo $EPOCHREALTIME; docker info >/dev/null 2>&1; echo $EPOCHREALTIME"},
			BuildNetwork: func(ctx context.Context, fd int) (executor.Network, error) {
				var err error
				sb, err = b.nets.Prepare(ctx, netpolicy.Spec{ID: "bench-docker-warm", NetnsFD: fd, Policy: netpolicy.Policy{Mode: netpolicy.ModeOffline}})
				return sb, err
			}})
		if sb != nil {
			sb.Close()
		}
		if err == nil && (res.ExitCode != 0 || res.Cause != nil) {
			err = fmt.Errorf("warm docker workload: exit %d, %v: %s", res.ExitCode, res.Cause, out.String())
		}
		if err != nil {
			return nil, nil, nil, err
		}
		var ts []time.Time
		for _, l := range strings.Fields(out.String()) {
			t, err := parseEpoch(l)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("warm docker workload printed %q: %v", out.String(), err)
			}
			ts = append(ts, t)
		}
		if len(ts) != 3 {
			return nil, nil, nil, fmt.Errorf("warm docker workload printed %q", out.String())
		}
		first, ready, again = append(first, ts[0].Sub(t0)), append(ready, ts[1].Sub(t0)), append(again, ts[2].Sub(ts[1]))
	}
	return first, ready, again, nil
}

// dockerJob runs one job with a Docker daemon and its network.
func (b *sandboxBench) dockerJob(ctx context.Context) (ready, build, run time.Duration, err error) {
	t0 := time.Now()
	sb, err := b.nets.Prepare(ctx, netpolicy.Spec{ID: "bench-docker", Policy: netpolicy.Policy{Mode: netpolicy.ModeOffline}})
	if err != nil {
		return 0, 0, 0, err
	}
	defer sb.Close()
	var out bytes.Buffer
	res, err := b.ex.Run(ctx, executor.Spec{JobID: "bench-docker", Slot: 0, Limits: b.limits, Network: sb, Docker: true, Output: &out,
		Argv: []string{"/bin/bash", "--norc", "--noprofile", "-c", dockerScript}})
	if err == nil && (res.ExitCode != 0 || res.Cause != nil) {
		err = fmt.Errorf("docker workload: exit %d, %v: %s", res.ExitCode, res.Cause, out.String())
	}
	if err != nil {
		return 0, 0, 0, err
	}
	var ts []time.Time
	for _, l := range strings.Fields(out.String()) {
		t, perr := parseEpoch(l)
		if perr != nil {
			return 0, 0, 0, fmt.Errorf("docker workload printed %q: %v", out.String(), perr)
		}
		ts = append(ts, t)
	}
	if len(ts) != 3 {
		return 0, 0, 0, fmt.Errorf("docker workload printed %q", out.String())
	}
	return ts[0].Sub(t0), ts[1].Sub(ts[0]), ts[2].Sub(ts[1]), nil
}

type sandboxBench struct {
	ex     *bwrap.Executor
	nets   *netpolicy.Manager
	limits executor.Limits
}

// jobTimes are one job's measurements.
type jobTimes struct {
	first    time.Duration // lease (t0) → the workload's first instruction
	netUp    time.Duration
	netDown  time.Duration
	teardown time.Duration // workload exit → Run returned (and network closed)
}

// job runs one bash workload that prints its start time.
func (b *sandboxBench) job(ctx context.Context, slot int, withNet bool) (jobTimes, error) {
	var t jobTimes
	t0 := time.Now()
	spec := executor.Spec{JobID: "bench", Slot: slot, Limits: b.limits,
		Argv: []string{"/bin/bash", "--norc", "--noprofile", "-c", "echo $EPOCHREALTIME"}}
	var sb *netpolicy.Sandbox
	if withNet {
		var err error
		sb, err = b.nets.Prepare(ctx, netpolicy.Spec{ID: "bench", Policy: netpolicy.Policy{Mode: netpolicy.ModeAllowList, Allow: []string{"example.com"}}})
		if err != nil {
			return t, err
		}
		t.netUp = time.Since(t0)
		spec.Network = sb
	}
	var out bytes.Buffer
	spec.Output = &out
	res, err := b.ex.Run(ctx, spec)
	end := time.Now()
	if err == nil && (res.ExitCode != 0 || res.Cause != nil) {
		err = fmt.Errorf("workload: exit %d, %v: %s", res.ExitCode, res.Cause, out.String())
	}
	if sb != nil {
		d := time.Now()
		if _, cerr := sb.Close(); cerr != nil && err == nil {
			err = cerr
		}
		t.netDown = time.Since(d)
		end = time.Now()
	}
	if err != nil {
		return t, err
	}
	started, perr := parseEpoch(strings.TrimSpace(out.String()))
	if perr != nil {
		return t, fmt.Errorf("workload printed %q: %v", out.String(), perr)
	}
	t.first = started.Sub(t0)
	// From the sandbox gone to everything released: workspace, cgroup,
	// network.
	t.teardown = end.Sub(res.Finished)
	return t, nil
}

// throughput runs jobs from n workers for d and counts those finished.
func (b *sandboxBench) throughput(ctx context.Context, n int, d time.Duration, withNet bool) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	done, failed := 0, error(nil)
	var wg sync.WaitGroup
	for slot := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := b.job(context.WithoutCancel(ctx), slot, withNet)
				mu.Lock()
				if err != nil && failed == nil {
					failed = err
				}
				if err == nil && ctx.Err() == nil {
					done++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return done, failed
}

// parseEpoch reads bash's $EPOCHREALTIME (seconds.microseconds).
func parseEpoch(s string) (time.Time, error) {
	sec, frac, ok := strings.Cut(s, ".")
	if !ok {
		sec, frac, ok = strings.Cut(s, ",") // a locale's decimal comma
	}
	if !ok {
		return time.Time{}, errors.New("no fraction")
	}
	si, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	fi, err := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(si, fi*1000), nil
}

type sample struct{ all []jobTimes }

func (s *sample) add(t jobTimes) { s.all = append(s.all, t) }

func (s *sample) sorted(f func(jobTimes) time.Duration) []time.Duration {
	v := make([]time.Duration, len(s.all))
	for i, t := range s.all {
		v[i] = f(t)
	}
	slices.Sort(v)
	return v
}

func (s *sample) median(f func(jobTimes) time.Duration) time.Duration {
	v := s.sorted(f)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

func (s *sample) quantiles(f func(jobTimes) time.Duration) string {
	v := s.sorted(f)
	if len(v) == 0 {
		return "-"
	}
	return ms(v[len(v)/2]) + " / " + ms(v[min(len(v)-1, len(v)*99/100)])
}
