package bwrap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/execinit"
	"github.com/nimbus-build/nimbus/internal/executor/jobdocker"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
)

// warmDockerPool names the pool of sandboxes with a Docker daemon.
const warmDockerPool = "bwrap:docker"

// Where a warm sandbox's init and its control directory are.
const (
	initTarget    = "/.nimbus/init"
	ctlTarget     = "/.nimbus/ctl"         // read-only
	commandTarget = ctlTarget + "/command" // the named pipe of the job's command
	warmReadyWait = 2 * time.Minute        // for the daemon and the init
	warmPoll      = 10 * time.Millisecond
)

// warmSandbox is a sandbox made before its job: everything a job with a
// Docker daemon gets (its slot's uid, storage, cgroup, TUN device, an
// empty network namespace of its own), the daemon started, and
// `nimbus container-init` waiting for the job's command on a named pipe.
// It serves one job and is removed with it.
type warmSandbox struct {
	slot     int
	p        *sandboxProcess
	st       *jobStorage
	cg       sandboxCgroup
	netFiles string            // host directory of the bound network files
	tun      string            // the TUN device node
	ctl      string            // host directory bound at ctlTarget
	binds    map[string]string // Options.WarmBinds' targets → their host directories (shared mounts)
	command  *os.File          // the pipe's write end, opened once the init held its own
	out      *switchWriter
	// supervised: supervise has waited for p (it may not be waited for
	// twice).
	supervised bool
}

// WaitWarm blocks until every warm sandbox is ready, or ctx ends.
func (e *Executor) WaitWarm(ctx context.Context) error { return e.warm.WaitFull(ctx) }

// newWarmPool starts keeping WarmDocker sandboxes ready.
func (e *Executor) newWarmPool() (*warmpool.Pool[*warmSandbox], error) {
	if e.opts.WarmDocker == 0 {
		return nil, nil
	}
	if !e.asRoot {
		return nil, errors.New("warm sandboxes need the agent to run as root")
	}
	var keys []warmpool.Key
	for slot := range e.opts.WarmDocker {
		keys = append(keys, warmpool.Key{Pool: warmDockerPool, Slot: slot})
	}
	return warmpool.New(keys, warmpool.Funcs[*warmSandbox]{
		Make:    e.makeWarm,
		Alive:   func(_ context.Context, w *warmSandbox) error { return w.alive() },
		Destroy: e.destroyWarm,
	}, e.opts.Metrics, e.log), nil
}

// makeWarm makes k's sandbox and returns once its daemon answers and its
// init waits.
func (e *Executor) makeWarm(ctx context.Context, k warmpool.Key) (_ *warmSandbox, err error) {
	uid, gid, err := e.Identity(k.Slot)
	if err != nil {
		return nil, err
	}
	log := e.log.With("pool", k.Pool, "slot", k.Slot)
	limits := e.opts.WarmLimits
	w := &warmSandbox{slot: k.Slot, out: &switchWriter{early: limitedBuffer{max: maxStderr}}}
	defer func() {
		if err != nil {
			e.destroyWarm(w)
		}
	}()
	if w.st, err = e.newJobStorage("warm-docker", k.Slot, limits.Disk, uid, gid); err != nil {
		return nil, err
	}
	e.dockerOnce.Do(func() { e.dockerErr = jobdocker.WriteConf(e.dockerConf) })
	if e.dockerErr != nil {
		return nil, e.dockerErr
	}
	storage, err := w.st.dockerDir(e.opts.WorkRoot, "warm-docker", uid, gid)
	if err != nil {
		return nil, err
	}
	// Names of their own: a job may still run in the slot.
	suffix := fmt.Sprintf("%d-%s", k.Slot, randomHex(4))
	w.netFiles = filepath.Join(e.opts.WorkRoot, "warm-net-"+suffix)
	// The host's own until the job's network writes its own.
	var files []executor.File
	for _, p := range e.opts.WarmNetFiles {
		data, _ := os.ReadFile(p)
		files = append(files, executor.File{Path: p, Data: data})
	}
	if err := jobdocker.WriteNetFiles(w.netFiles, files); err != nil {
		return nil, err
	}
	var binds []executor.Bind
	w.binds = map[string]string{}
	for i, target := range e.opts.WarmBinds {
		dir := filepath.Join(e.opts.WorkRoot, fmt.Sprintf("warm-bind-%s-%d", suffix, i))
		if err := makeSharedDir(dir); err != nil {
			return nil, fmt.Errorf("warm bind %s: %w", target, err)
		}
		w.binds[target] = dir
		binds = append(binds, executor.Bind{Source: dir, Target: target})
	}
	w.tun = filepath.Join(e.opts.WorkRoot, "warm-tun-"+suffix)
	if err := jobdocker.MakeTun(w.tun, uid, gid); err != nil {
		return nil, err
	}
	w.ctl = filepath.Join(e.opts.WorkRoot, "warm-ctl-"+suffix)
	if err := os.Mkdir(w.ctl, 0o755); err != nil {
		return nil, err
	}
	pipe := filepath.Join(w.ctl, "command")
	if err := unix.Mkfifo(pipe, 0o400); err != nil {
		return nil, fmt.Errorf("command pipe: %w", err)
	}
	if err := os.Chown(pipe, uid, gid); err != nil {
		return nil, err
	}
	if w.cg, err = e.cgroups.newSandbox(cgroupName(k.Slot), limits); err != nil {
		return nil, err
	}
	args, err := buildArgs(invocation{
		Argv: []string{initTarget, "container-init", "--command", commandTarget},
		Binds: append([]executor.Bind{{Source: e.opts.Init, Target: initTarget, ReadOnly: true},
			{Source: w.ctl, Target: ctlTarget, ReadOnly: true}}, binds...),
		Workspace: w.st.workspace,
		Tmp:       w.st.tmp,
		Host:      e.host,
		Etc:       e.opts.Etc,
		Network:   networkLater,
		NetFiles:  e.opts.WarmNetFiles,
		Seccomp:   true,
		Docker:    &jobdocker.Layout{Storage: storage, Conf: e.dockerConf, NetFiles: w.netFiles, Tun: w.tun, Warm: true},
	})
	if err != nil {
		return nil, err
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	if w.p, err = startSandbox(e.opts.BwrapPath, args, newAccounts(uid, gid), cred,
		confinement{seccomp: e.nested, cgroup: w.cg}, w.out, log); err != nil {
		return nil, err
	}
	// The init opens its end once the daemon answers.
	if w.command, err = execinit.AwaitReader(ctx, pipe, warmReadyWait, w.p.exited); err != nil {
		if errors.Is(err, execinit.ErrGone) {
			<-w.p.stderrDone
			err = fmt.Errorf("%w: %s%s", err, w.p.stderr.String(), w.out.earlyOutput())
		}
		return nil, err
	}
	<-w.p.initKnown // long since: bwrap reports it before the sandbox runs
	if w.p.init == nil {
		return nil, errors.New("the warm sandbox's init is not tracked")
	}
	return w, nil
}

// alive reports whether w's init still waits.
func (w *warmSandbox) alive() error {
	select {
	case <-w.p.exited:
		return errors.New("the sandbox ended")
	default:
	}
	return nil
}

// destroyWarm stops w's processes and removes all it holds.
func (e *Executor) destroyWarm(w *warmSandbox) {
	if w.command != nil {
		w.command.Close()
	}
	if w.p != nil && !w.supervised {
		w.p.kill()
		w.p.wait()
	}
	var errs []error
	if w.cg != nil {
		errs = append(errs, w.cg.destroy())
	}
	if w.st != nil {
		errs = append(errs, w.st.remove())
	}
	for _, dir := range w.binds {
		errs = append(errs, unmountAll(dir), os.RemoveAll(dir))
	}
	for _, p := range []string{w.tun, w.netFiles, w.ctl} {
		if p != "" {
			errs = append(errs, os.RemoveAll(p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		e.log.Error("remove a warm sandbox", "slot", w.slot, "error", err)
	}
}

// takeWarm hands spec a ready sandbox of its slot, or nil: the job then
// makes its own. Only jobs with a daemon, the pool's limits, no binds and
// a network built later can take one.
func (e *Executor) takeWarm(ctx context.Context, spec executor.Spec) *warmSandbox {
	if e.warm == nil || !spec.Docker {
		return nil
	}
	k := warmpool.Key{Pool: warmDockerPool, Slot: spec.Slot}
	if !e.warmBinds(spec.Binds) || spec.Limits != e.opts.WarmLimits || spec.Network != nil || spec.BuildNetwork == nil || !e.warm.Has(k) {
		e.warm.Miss(k.Pool)
		return nil
	}
	w, _ := e.warm.Take(ctx, k)
	return w
}

// warmBinds reports whether a warm sandbox can take binds: read-write
// directories, each at one of Options.WarmBinds.
func (e *Executor) warmBinds(binds []executor.Bind) bool {
	seen := map[string]bool{}
	for _, b := range binds {
		st, err := os.Stat(b.Source)
		if b.ReadOnly || seen[b.Target] || !slices.Contains(e.opts.WarmBinds, b.Target) || err != nil || !st.IsDir() {
			return false
		}
		seen[b.Target] = true
	}
	return true
}

// makeSharedDir makes dir a mount point of its own in a peer group of its
// own (a bind of itself, shared): what is mounted on it later appears in
// every sandbox that bound it (bubblewrap's mounts are its slaves).
func makeSharedDir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return unix.Mount("", dir, "", unix.MS_SHARED, "")
}

// unmountAll unmounts whatever is mounted on dir (stacked mounts too).
func unmountAll(dir string) error {
	for range 8 {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // not a mount point (any more)
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted", dir)
}

// runWarm runs spec in w: builds the job's network in w's namespace,
// hands the init the job's command (credentials first), and supervises it
// as Run does.
func (e *Executor) runWarm(ctx context.Context, spec executor.Spec, w *warmSandbox, log *slog.Logger) (executor.Result, error) {
	res := executor.Result{ExitCode: -1}
	defer e.destroyWarm(w)
	log.Info("job takes a warm sandbox")
	fail := func(err error) (executor.Result, error) {
		if ctx.Err() != nil {
			res.Cause = context.Cause(ctx)
			return res, nil
		}
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	// The job's binds, mounted on the directories the sandbox bound: the
	// mounts propagate into it.
	for _, b := range spec.Binds {
		if err := unix.Mount(b.Source, w.binds[b.Target], "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fail(fmt.Errorf("bind %s at %s in the warm sandbox: %w", b.Source, b.Target, err))
		}
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", w.p.init.pid))
	if err != nil {
		return fail(fmt.Errorf("the warm sandbox's network namespace: %w", err))
	}
	netw, err := spec.BuildNetwork(ctx, int(ns.Fd()))
	ns.Close()
	if err != nil {
		return fail(err)
	}
	for _, f := range netw.Files(sandboxHostname) {
		if !slices.Contains(e.opts.WarmNetFiles, f.Path) {
			return fail(fmt.Errorf("a warm sandbox cannot take the network file %s (not in WarmNetFiles)", f.Path))
		}
		// In place: the sandbox's bind follows the inode.
		if err := execinit.WriteInPlace(filepath.Join(w.netFiles, filepath.Base(f.Path)), f.Data); err != nil {
			return fail(err)
		}
	}
	env := maps.Clone(spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	for k, v := range jobdocker.Env {
		if _, ok := env[k]; !ok {
			env[k] = v
		}
	}
	var envList []string
	for _, kv := range jobEnv(env) {
		envList = append(envList, kv[0]+"="+kv[1])
	}
	cmd := execinit.Command{
		Argv: append([]string{shellPath, "-c", jobdocker.Credentials, "nimbus-docker"}, spec.Argv...),
		Env:  envList,
		Dir:  cmp.Or(spec.Dir, sandboxWorkspace),
	}
	w.out.set(cmp.Or[io.Writer](spec.Output, io.Discard))

	res.Started = time.Now()
	_, err = w.command.Write(cmd.Line())
	w.command.Close()
	w.command = nil
	if err != nil {
		return fail(fmt.Errorf("hand the command over: %w", err))
	}
	w.supervised = true
	return supervised(ctx, spec, w.p, limitWatch{limits: spec.Limits, cgroup: w.cg, storage: w.st, log: log}, res)
}

// switchWriter is a warm sandbox's output: kept (boundedly, for errors)
// until its job takes it, then the job's.
type switchWriter struct {
	mu    sync.Mutex
	w     io.Writer
	early limitedBuffer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return s.early.Write(p)
	}
	return s.w.Write(p)
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) earlyOutput() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.early.String()
}
