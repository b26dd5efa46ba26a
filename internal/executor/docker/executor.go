// Package docker is the Docker executor: it runs a job's workload in a
// container of the job's image, through the host's Docker Engine, as the
// job's unprivileged uid with every capability dropped, no new privileges,
// Docker's default syscall filter, CPU, memory and pids limits, the job's
// own network (its namespace Docker makes, equipped by netpolicy with the
// job's egress policy before the workload starts), and no Docker socket
// inside.
//
// Lifecycle: Run creates the container with a small init of Nimbus's own
// (the agent's static binary, `nimbus container-init`, bound read-only)
// that waits on stdin; starts it; builds its network in the container's
// namespace; sends the init the workload's command, which it execs; copies
// the output as it comes; waits for the exit; removes the container. Every
// container carries the executor's owner label, so a restarted agent
// removes what a crashed one left (New).
package docker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/execinit"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// Labels on every container of the executor.
const (
	labelOwner = "build.nimbus.owner" // the executor's owner id (its work root's)
	labelJob   = "build.nimbus.job"
	labelWarm  = "build.nimbus.warm" // a warm container's slot
)

// Fixed places inside the container.
const (
	initTarget      = "/.nimbus/init"
	ctlTarget       = "/.nimbus/ctl"         // the container's control directory, read-only
	commandTarget   = ctlTarget + "/command" // the named pipe its init reads its command from
	outputTarget    = ctlTarget + "/output"  // the named pipe of the job's stdout and stderr
	initWait        = time.Minute            // for a container's init to wait for its command
	containerWS     = "/workspace"
	defaultPath     = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	defaultHostname = "nimbus"
)

// Defaults of Options.
const (
	DefaultSocket  = "/var/run/docker.sock"
	DefaultUIDBase = 100000
)

// Options configure an Executor.
type Options struct {
	// Socket is the Docker Engine's Unix socket. Default DefaultSocket.
	Socket string
	// WorkRoot holds the jobs' workspaces and per-job files (required,
	// absolute); emptied by New.
	WorkRoot string
	// UIDBase: the job in slot n runs as uid and gid UIDBase+n. Default
	// DefaultUIDBase.
	UIDBase int
	// Init is a statically linked nimbus binary (the agent's own, built
	// with CGO_ENABLED=0), run in each container as `container-init`.
	// Default: the running executable.
	Init string
	// Warm keeps containers ready for the jobs of these images (see Warm).
	Warm []Warm
	// Metrics count the warm pools' hits, misses and refills (nil: not
	// exported).
	Metrics *warmpool.Metrics
	Logger  *slog.Logger
}

// Executor runs workloads in Docker containers. Safe for concurrent use.
type Executor struct {
	opts  Options
	c     *client
	owner string
	log   *slog.Logger

	warm *warmPools // nil: none

	mu   sync.Mutex
	busy map[int]bool
}

var _ executor.Executor = (*Executor)(nil)

// New checks the daemon and the init binary and removes what a crashed
// executor with the same work root left behind (containers, workspaces).
func New(ctx context.Context, o Options) (*Executor, error) {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.UIDBase == 0 {
		o.UIDBase = DefaultUIDBase
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if !filepath.IsAbs(o.WorkRoot) {
		return nil, fmt.Errorf("docker executor: WorkRoot %q is not an absolute path", o.WorkRoot)
	}
	if o.Init == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("docker executor: %w", err)
		}
		o.Init = exe
	}
	if err := checkStatic(o.Init); err != nil {
		return nil, fmt.Errorf("docker executor: %w", err)
	}
	sum := sha256.Sum256([]byte(filepath.Clean(o.WorkRoot)))
	e := &Executor{opts: o, c: newClient(o.Socket), owner: hex.EncodeToString(sum[:8]),
		log: o.Logger.With("component", "executor", "executor", "docker"), busy: map[int]bool{}}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.c.ping(pctx); err != nil {
		return nil, fmt.Errorf("docker executor: %w", err)
	}
	if err := e.sweep(ctx); err != nil {
		return nil, err
	}
	var err error
	if e.warm, err = newWarmPools(e, o.Warm, o.Metrics); err != nil {
		return nil, fmt.Errorf("docker executor: %w", err)
	}
	return e, nil
}

// Close removes the warm containers; runs in flight go on.
func (e *Executor) Close() error {
	e.warm.close()
	return nil
}

// WaitWarm blocks until every warm pool is full, or ctx ends.
func (e *Executor) WaitWarm(ctx context.Context) error { return e.warm.waitFull(ctx) }

// checkStatic refuses a binary that needs a dynamic loader: it must run in
// any image, with or without a C library.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("init binary %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("init binary %s is dynamically linked: build nimbus with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}

// sweep removes the containers and workspaces of this owner.
func (e *Executor) sweep(ctx context.Context) error {
	ids, err := e.c.listByLabel(ctx, labelOwner, e.owner)
	if err != nil {
		return fmt.Errorf("docker executor: list leftovers: %w", err)
	}
	for _, id := range ids {
		if err := e.c.remove(ctx, id); err != nil {
			return fmt.Errorf("docker executor: remove leftover container %s: %w", id, err)
		}
		e.log.Info("removed a container a previous agent left", "container", id[:min(12, len(id))])
	}
	if err := os.MkdirAll(e.opts.WorkRoot, 0o711); err != nil {
		return err
	}
	entries, err := os.ReadDir(e.opts.WorkRoot)
	if err != nil {
		return err
	}
	for _, en := range entries {
		if err := workspace.Remove(filepath.Join(e.opts.WorkRoot, en.Name())); err != nil {
			return err
		}
	}
	return nil
}

// Name is "docker".
func (e *Executor) Name() string { return "docker" }

// Identity is the uid and gid of a slot's job.
func (e *Executor) Identity(slot int) (uid, gid int) {
	return e.opts.UIDBase + slot, e.opts.UIDBase + slot
}

// Run runs spec in a fresh container; see the package documentation.
func (e *Executor) Run(ctx context.Context, spec executor.Spec) (res executor.Result, err error) {
	res = executor.Result{ExitCode: -1}
	if ctx.Err() != nil {
		res.Cause = context.Cause(ctx)
		return res, nil
	}
	if err := validate(spec); err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	if err := e.begin(spec.Slot); err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	defer e.end(spec.Slot)
	log := e.log.With("job_id", spec.JobID, "slot", spec.Slot)
	// A job stopped (cancelled, lease lost) while its container is being
	// made has a cause, not an error.
	stopped := func(err error) (executor.Result, error) {
		if ctx.Err() != nil {
			res.Cause = context.Cause(ctx)
			return res, nil
		}
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	c := e.warm.take(ctx, spec)
	if c != nil {
		log.Info("job takes a warm container", "container", c.short())
	} else {
		uid, gid := e.Identity(spec.Slot)
		c, err = e.makeContainer(ctx, containerParams{
			name: spec.JobID, image: spec.Container.Image, readOnlyRoot: spec.Container.ReadOnlyRoot,
			limits: spec.Limits, uid: uid, gid: gid, binds: spec.Binds, netFiles: spec.BuildNetwork != nil,
			labels: map[string]string{labelJob: spec.JobID},
		})
		if err != nil {
			return stopped(err)
		}
	}
	cctx := context.WithoutCancel(ctx) // the cleanup's calls must outlive a cancel
	defer e.destroy(cctx, c, log)
	id := c.id
	out := spec.Output
	if out == nil {
		out = io.Discard
	}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, c.out)
		if err != nil && !errors.Is(err, os.ErrClosed) {
			log.Warn("job output lost: writer failed", "error", err)
			io.Copy(io.Discard, c.out) // never block the job on a full pipe
		}
		copied <- err
	}()
	var ex struct {
		code int
		err  error
	}
	exited := make(chan struct{}) // closed once ex is set
	waitCtx, stopWait := context.WithCancel(cctx)
	defer stopWait()
	go func() {
		ex.code, ex.err = e.c.wait(waitCtx, id)
		close(exited)
	}()
	res.Started = time.Now()

	runCtx, cancel := runContext(ctx, spec.Timeout)
	defer cancel()
	if spec.BuildNetwork != nil {
		if err := e.network(runCtx, c, spec); err != nil {
			if runCtx.Err() != nil {
				res.Cause = context.Cause(runCtx)
				return res, nil
			}
			return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
		}
	} else if c.netFiles {
		// A warm container's network files are bound whatever the job: a
		// job without a network gets the loopback names only.
		if err := execinit.WriteInPlace(filepath.Join(c.etc, "hosts"), []byte(noNetworkHosts)); err != nil {
			return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
		}
	}
	cmd := execinit.Command{Argv: spec.Argv, Env: env(spec.Env), Dir: cmp(spec.Dir, containerWS)}
	if c.commandW == nil { // a cold container: its init is starting
		c.commandW, err = execinit.AwaitReader(runCtx, c.command, initWait, exited)
	}
	if c.commandW != nil {
		_, err = c.commandW.Write(cmd.Line())
		c.commandW.Close()
		c.commandW = nil
	}
	// The init holds its end of the output pipe by now (it opens it
	// first), or has ended: the pipe ends with the job's last writer.
	c.hold.Close()
	c.hold = nil
	if err != nil && runCtx.Err() == nil {
		select {
		case <-exited: // the init ended before it took its command: its exit tells
		default:
			return res, fmt.Errorf("run job %s: hand the command over: %w", spec.JobID, err)
		}
	}

	select {
	case <-exited:
	case <-runCtx.Done():
		res.Cause = context.Cause(runCtx)
		kctx, kcancel := context.WithTimeout(cctx, 10*time.Second)
		e.c.kill(kctx, id)
		kcancel()
		<-exited
	}
	// Every process of the container is gone, so is every writer; a
	// bound all the same.
	select {
	case <-copied:
	case <-time.After(10 * time.Second):
		log.Warn("the job's output did not end with its container")
		c.out.Close()
		<-copied
	}
	res.Finished = time.Now()
	if ex.err != nil && res.Cause == nil {
		return res, fmt.Errorf("run job %s: wait: %w", spec.JobID, ex.err)
	}
	if res.Cause != nil {
		return res, nil
	}
	res.ExitCode = ex.code
	if spec.Limits.Memory > 0 && e.oomKilled(cctx, id, ex.code) {
		res.Cause = &executor.LimitError{Resource: "memory", Limit: spec.Limits.Memory}
	}
	return res, nil
}

// oomKilled says whether the kernel's OOM killer ended a process of the
// ended container id. The daemon learns it from containerd's OOM event,
// which can come after the exit event: a job that died of SIGKILL (exit
// 137) is asked about again for up to a second before the answer is no.
func (e *Executor) oomKilled(ctx context.Context, id string, code int) bool {
	deadline := time.Now().Add(time.Second)
	for {
		ictx, icancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := e.c.inspect(ictx, id)
		icancel()
		if err == nil && st.State.OOMKilled {
			return true
		}
		if err != nil || code != 128+9 || time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// config is the container of p.
func (e *Executor) config(p containerParams, binds []string) containerConfig {
	labels := map[string]string{labelOwner: e.owner}
	maps.Copy(labels, p.labels)
	hc := hostConfig{
		Binds:          binds,
		NetworkMode:    "none",
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		ReadonlyRootfs: p.readOnlyRoot,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,mode=1777"},
		Init:           true,
		Memory:         p.limits.Memory,
		NanoCPUs:       int64(p.limits.CPUs * 1e9),
		IpcMode:        "private",
	}
	if p.limits.Memory > 0 {
		hc.MemorySwap = p.limits.Memory // no swap
	}
	if p.limits.Pids > 0 {
		n := p.limits.Pids
		hc.PidsLimit = &n
	}
	return containerConfig{
		Image:      p.image,
		Entrypoint: []string{initTarget, "container-init", "--output", outputTarget, "--command", commandTarget},
		User:       strconv.Itoa(p.uid) + ":" + strconv.Itoa(p.gid),
		WorkingDir: containerWS,
		Hostname:   defaultHostname,
		Labels:     labels,
		HostConfig: hc,
	}
}

// network builds the job's network in the container's namespace (its
// init is waiting) and writes the network's resolv.conf and hosts.
func (e *Executor) network(ctx context.Context, c *container, spec executor.Spec) error {
	if c.pid == 0 { // a warm one's was read as it was taken
		if err := e.alive(ctx, c); err != nil {
			return fmt.Errorf("the container before its network: %w", err)
		}
	}
	etc := c.etc
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", c.pid))
	if err != nil {
		return fmt.Errorf("the container's network namespace: %w", err)
	}
	defer ns.Close()
	netw, err := spec.BuildNetwork(ctx, int(ns.Fd()))
	if err != nil {
		return fmt.Errorf("the container's network: %w", err)
	}
	for _, f := range netw.Files(defaultHostname) {
		switch f.Path {
		case "/etc/resolv.conf", "/etc/hosts":
			// In place: the container's bind follows the inode.
			if err := execinit.WriteInPlace(filepath.Join(etc, filepath.Base(f.Path)), f.Data); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *Executor) begin(slot int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.busy[slot] {
		return fmt.Errorf("slot %d already runs a job", slot)
	}
	e.busy[slot] = true
	return nil
}

func (e *Executor) end(slot int) {
	e.mu.Lock()
	delete(e.busy, slot)
	e.mu.Unlock()
}

func validate(spec executor.Spec) error {
	switch {
	case spec.Container == nil || spec.Container.Image == "":
		return errors.New("the Docker executor needs a container image")
	case len(spec.Argv) == 0 || spec.Argv[0] == "":
		return errors.New("empty command")
	case spec.Docker:
		return errors.New("the Docker executor gives no container a Docker daemon of its own (the bubblewrap executor does)")
	case spec.Network != nil:
		return errors.New("the Docker executor builds its network itself (BuildNetwork), it cannot join one")
	case strings.ContainsAny(spec.Container.Image, " \t\n\x00"):
		return fmt.Errorf("image %q: bad characters", spec.Container.Image)
	}
	for _, b := range spec.Binds {
		if !filepath.IsAbs(b.Source) || !filepath.IsAbs(b.Target) || strings.ContainsAny(b.Source+b.Target, ":,\x00") {
			return fmt.Errorf("bind %s → %s: paths must be absolute, without ':' or ','", b.Source, b.Target)
		}
	}
	return spec.Limits.Validate()
}

// env is the workload's environment, sorted, with PATH and HOME.
func env(m map[string]string) []string {
	m = maps.Clone(m)
	if m == nil {
		m = map[string]string{}
	}
	if _, ok := m["PATH"]; !ok {
		m["PATH"] = defaultPath
	}
	if _, ok := m["HOME"]; !ok {
		m["HOME"] = containerWS
	}
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func runContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeoutCause(ctx, timeout, executor.ErrTimeout)
	}
	return context.WithCancel(ctx)
}

// sanitize makes a container name part of a job id.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "job"
	}
	return b.String()[:min(b.Len(), 64)]
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
