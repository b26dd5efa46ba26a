package bwrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// maxStderr bounds how much of bwrap's own stderr is kept.
const maxStderr = 8 << 10

// ErrSetup is wrapped by the error Run returns when bubblewrap could not
// set up the sandbox (a bind source missing, user namespaces disabled...).
var ErrSetup = errors.New("bubblewrap could not set up the sandbox")

// sandboxProcess is one run of bwrap and the sandbox it creates: bwrap
// itself (our child, which waits for the job), the sandbox's init (bwrap's
// child, pid 1 of the new pid namespace) and the job under the init.
//
// Every goroutine it starts ends by the time wait returns.
type sandboxProcess struct {
	cmd    *exec.Cmd
	cgroup sandboxCgroup // nil: bwrap starts in the agent's cgroup
	log    *slog.Logger

	initKnown chan struct{} // closed once init is set, or known not to exist
	init      *initProcess

	started chan bool // one value: whether the job was exec'd

	exited  chan struct{} // closed once bwrap has been waited for
	waitErr error

	copied chan struct{} // closed once the job's output is all copied

	stderrDone chan struct{} // closed once bwrap's stderr is closed
	stderr     limitedBuffer
}

// confinement is what confines a sandbox besides its bwrap options.
type confinement struct {
	seccomp []byte        // the syscall filter (bwrap --seccomp); nil: none
	cgroup  sandboxCgroup // where bwrap starts; nil: the agent's cgroup
	// network is the namespace bwrap starts in, netFiles its files; nil:
	// bwrap makes an empty one (--unshare-net).
	network  executor.Network
	netFiles []executor.File
}

// startSandbox starts bwrap with args. The job's stdout and stderr go,
// through one pipe, to out; cred, when set, is the host identity bwrap runs
// as.
func startSandbox(bwrapPath string, args bwrapArgs, acc accounts, cred *syscall.Credential, conf confinement, out io.Writer, log *slog.Logger) (*sandboxProcess, error) {
	var closeAfterStart, closeOnError []*os.File
	defer func() {
		for _, f := range closeAfterStart {
			_ = f.Close()
		}
	}()
	fail := func(err error) (*sandboxProcess, error) {
		for _, f := range closeOnError {
			_ = f.Close()
		}
		return nil, fmt.Errorf("start bwrap: %w", err)
	}
	data := [][]byte{args.OptionsData(), acc.Passwd, acc.Group, conf.seccomp}
	for _, f := range conf.netFiles {
		data = append(data, f.Data)
	}
	memFiles := make([]*os.File, len(data))
	for i, data := range data {
		f, err := memFile("nimbus-bwrap", data)
		if err != nil {
			return fail(err)
		}
		closeAfterStart = append(closeAfterStart, f)
		memFiles[i] = f
	}
	var pipes [4][2]*os.File // info, started, output, stderr: read and write ends
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		pipes[i] = [2]*os.File{r, w}
		closeOnError = append(closeOnError, r)
		closeAfterStart = append(closeAfterStart, w)
	}
	info, started, output, stderr := pipes[0], pipes[1], pipes[2], pipes[3]

	extra := make([]*os.File, fdNetFiles-3+len(conf.netFiles))
	extra[fdArgs-3] = memFiles[0]
	extra[fdInfo-3] = info[1]
	extra[fdStarted-3] = started[1]
	extra[fdPasswd-3] = memFiles[1]
	extra[fdGroup-3] = memFiles[2]
	extra[fdSeccomp-3] = memFiles[3]
	for i := range conf.netFiles {
		extra[fdNetFiles-3+i] = memFiles[4+i]
	}
	cmd := &exec.Cmd{
		Path:       bwrapPath,
		Args:       append([]string{"bwrap"}, args.Argv()...),
		Env:        []string{}, // nothing of the agent's environment
		Dir:        "/",
		Stdout:     output[1],
		Stderr:     stderr[1],
		ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{
			Credential: cred,
			// bwrap's --die-with-parent sets this too, but only once it runs.
			Pdeathsig: syscall.SIGKILL,
			// Keep terminal signals meant for the agent away from the sandbox.
			Setpgid: true,
		},
	}
	if err := markInheritedCloexec(); err != nil {
		return fail(fmt.Errorf("mark inherited descriptors close-on-exec: %w", err))
	}
	p := &sandboxProcess{
		cmd:        cmd,
		cgroup:     conf.cgroup,
		log:        log,
		initKnown:  make(chan struct{}),
		started:    make(chan bool, 1),
		exited:     make(chan struct{}),
		copied:     make(chan struct{}),
		stderrDone: make(chan struct{}),
		stderr:     limitedBuffer{max: maxStderr},
	}
	if err := p.startAndWait(conf.network); err != nil {
		return fail(err)
	}
	go p.readInfo(info[0])
	go p.readStarted(started[0])
	go p.copyOutput(output[0], out)
	go p.readStderr(stderr[0])
	return p, nil
}

// startAndWait starts bwrap from a goroutine that stays locked to its OS
// thread until bwrap has exited, and closes p.exited then. A parent-death
// signal fires when the thread that forked the child ends, not the process:
// unlocked, the thread could be handed to a goroutine that locks it and
// exits, and the kernel would kill a healthy job. The same thread is the
// one that enters the sandbox's network namespace and its cgroup (v1) for
// the fork (a child starts in its parent thread's); should it fail to
// leave either, it stays locked and ends with the goroutine.
func (p *sandboxProcess) startAndWait(netw executor.Network) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := true
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		leaveNetns := func() error { return nil }
		if netw != nil {
			var err error
			if leaveNetns, err = netw.Enter(); err != nil {
				errc <- fmt.Errorf("enter the sandbox's network namespace: %w", err)
				return
			}
		}
		var err error
		if p.cgroup != nil {
			restored, err = p.cgroup.start(p.cmd)
			if !restored {
				p.log.Error("the thread that started bwrap could not leave the sandbox's cgroup; it will end with the job")
			}
		} else {
			err = p.cmd.Start()
		}
		if nerr := leaveNetns(); nerr != nil {
			restored = false
			p.log.Error("the thread that started bwrap could not leave the sandbox's network namespace; it will end with the job", "error", nerr)
		}
		if err != nil {
			errc <- err
			return
		}
		errc <- nil
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return <-errc
}

// readInfo learns the init's pid from bwrap's --info-fd.
func (p *sandboxProcess) readInfo(r *os.File) {
	defer close(p.initKnown)
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil || len(data) == 0 {
		return // bwrap failed before creating the sandbox
	}
	var info struct {
		ChildPID int `json:"child-pid"`
	}
	if err := json.Unmarshal(data, &info); err != nil || info.ChildPID <= 0 {
		p.log.Warn("unreadable bwrap info", "info", string(data), "error", err)
		return
	}
	init, err := openInit(info.ChildPID, p.cmd.Process.Pid)
	if err != nil {
		p.log.Warn("cannot track the sandbox init; relying on bwrap to kill it", "error", err)
		return
	}
	p.init = init
}

// readStarted reports whether the wrapper signalled that it execs the job.
func (p *sandboxProcess) readStarted(r *os.File) {
	defer r.Close()
	var b [1]byte
	n, _ := io.ReadFull(r, b[:])
	p.started <- n == 1
}

func (p *sandboxProcess) copyOutput(r *os.File, w io.Writer) {
	defer close(p.copied)
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		p.log.Warn("job output lost: writer failed", "error", err)
		_, _ = io.Copy(io.Discard, r) // never block the job on a full pipe
	}
}

func (p *sandboxProcess) readStderr(r *os.File) {
	defer close(p.stderrDone)
	defer r.Close()
	_, _ = io.Copy(&p.stderr, r)
}

// supervise waits for the sandbox to end, and kills it when ctx is done
// first. It returns the job's exit code (-1 when killed) and why it was
// killed, or an error wrapping ErrSetup when bwrap never started the job.
func (p *sandboxProcess) supervise(ctx context.Context) (code int, cause, err error) {
	select {
	case ok := <-p.started:
		if !ok {
			p.kill() // should the job run anyway, it would run unsupervised
			p.wait()
			return -1, nil, p.setupError()
		}
		select {
		case <-p.exited:
		case <-ctx.Done():
			cause = context.Cause(ctx)
			p.kill()
		}
	case <-ctx.Done():
		cause = context.Cause(ctx)
		p.kill()
	}
	code = p.wait()
	if msg := p.stderr.String(); msg != "" {
		p.log.Warn("bwrap reported errors", "stderr", msg)
	}
	if cause != nil {
		return -1, cause, nil
	}
	return code, nil, nil
}

// kill stops the whole sandbox at once: the init first (the kernel then
// kills everything else in its pid namespace), then bwrap.
func (p *sandboxProcess) kill() {
	select {
	case <-p.initKnown:
	case <-p.exited:
		<-p.initKnown // bwrap is gone, so is every writer of the info pipe
	}
	if p.init != nil {
		if err := p.init.kill(); err != nil {
			p.log.Warn("kill sandbox", "error", err)
		}
	}
	_ = p.cmd.Process.Kill()
}

// wait waits for bwrap, then makes sure nothing of the sandbox is left
// (killing the init if the job's daemons kept it alive) and that its output
// is all copied. It returns bwrap's exit code: the job's, 128+n when a
// signal n killed the job, -1 when bwrap itself was killed.
func (p *sandboxProcess) wait() int {
	<-p.exited
	<-p.initKnown
	if p.init != nil {
		if err := p.init.kill(); err != nil {
			p.log.Warn("kill sandbox", "error", err)
		}
		if err := p.init.wait(); err != nil {
			p.log.Warn("wait for sandbox", "error", err)
		}
		p.init.close()
	}
	<-p.copied
	<-p.stderrDone
	return p.cmd.ProcessState.ExitCode()
}

// setupError describes why the sandbox never started the job. Call it
// after wait.
func (p *sandboxProcess) setupError() error {
	msg := strings.TrimSpace(p.stderr.String())
	if msg == "" {
		msg = fmt.Sprintf("bwrap exited (%v) before starting the job", p.waitErr)
	}
	return fmt.Errorf("%w: %s", ErrSetup, msg)
}

// memFile returns an anonymous in-memory file holding data, positioned at
// its start.
func memFile(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write memfd: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("seek memfd: %w", err)
	}
	return f, nil
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	buf []byte
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return string(b.buf) }
