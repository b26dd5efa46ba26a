package bwrap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// File descriptors bwrap gets besides stdin, stdout and stderr.
const (
	statusFD = 3 // bwrap writes its JSON status here (--json-status-fd)
	argsFD   = 4 // bwrap reads its NUL-separated arguments here (--args)
)

// headSize is how much of the output is kept to explain a setup failure.
const headSize = 4 << 10

// invocation is one run of bwrap.
type invocation struct {
	path string
	// options are bwrap's options. They reach bwrap through a pipe
	// (--args), not its command line, which every host user can read: they
	// include the job's environment.
	options []string
	// command is what bwrap runs in the sandbox.
	command []string
	// cred is who bwrap runs as; nil runs it as the agent.
	cred *syscall.Credential
	// uid is the host uid the sandbox's processes run as.
	uid    int
	output io.Writer
}

// ending is how an invocation ended.
type ending struct {
	// exitCode is the command's exit status (128+n when a signal n it did
	// not get from us ended it); -1 when we killed the sandbox.
	exitCode int
	// cause is why we killed the sandbox: context.Cause of run's context.
	cause error
	// outputErr is the first error writing to output; the rest of the
	// output was discarded so that the job never blocks on a full pipe.
	outputErr error
}

// run starts bwrap and waits until it and every process of its sandbox have
// exited and all output has been copied. When ctx ends first it kills the
// sandbox. A non-nil error means bwrap could not create the sandbox or start
// the command; its message then includes bwrap's own.
func (inv invocation) run(ctx context.Context) (ending, error) {
	end := ending{exitCode: -1}
	var argsBuf bytes.Buffer
	for _, a := range inv.options {
		if strings.ContainsRune(a, 0) {
			return end, fmt.Errorf("bwrap argument %q contains a NUL byte", a)
		}
		argsBuf.WriteString(a)
		argsBuf.WriteByte(0)
	}
	p, err := newPipes()
	if err != nil {
		return end, err
	}
	cmd := &exec.Cmd{
		Path:   inv.path,
		Args:   append([]string{inv.path, "--args", strconv.Itoa(argsFD), "--"}, inv.command...),
		Env:    []string{}, // not even bwrap sees the agent's environment
		Dir:    "/",        // the agent's directory may be closed to the sandbox uid
		Stdout: p.outW,
		Stderr: p.outW, // one pipe: stdout and stderr interleaved as written
		// Index i becomes file descriptor 3+i.
		ExtraFiles:  []*os.File{p.statusW, p.argsR},
		SysProcAttr: &syscall.SysProcAttr{Credential: inv.cred},
	}
	proc, err := start(cmd)
	p.closeChildEnds()
	if err != nil {
		p.closeParentEnds()
		return end, fmt.Errorf("start %s: %w", inv.path, err)
	}

	var wg sync.WaitGroup
	head := &prefixBuffer{max: headSize}
	wg.Go(func() {
		defer p.argsW.Close()
		// Fails only when bwrap died before reading; its wait status says why.
		_, _ = p.argsW.Write(argsBuf.Bytes())
	})
	wg.Go(func() {
		defer p.outR.Close()
		end.outputErr = drain(io.MultiWriter(head, inv.output), p.outR)
	})
	st := readStatus(p.statusR)

	end.cause = supervise(ctx, proc, cmd.Process, st, inv.uid)
	wg.Wait()

	switch {
	case end.cause != nil:
		return end, nil
	case st.exited:
		end.exitCode = st.exitCode
		return end, nil
	default:
		return end, fmt.Errorf("bwrap could not set up the sandbox (%v): %s", proc.err, strings.TrimSpace(head.String()))
	}
}

// supervise waits for the sandbox to end, killing it if ctx ends first, and
// returns only once every process of the sandbox has exited. It returns
// context.Cause(ctx) if it killed the sandbox, else nil.
//
// The sandbox's pid 1 is bwrap's init: when it dies, the kernel kills every
// other process in the sandbox's pid namespace, however they daemonised,
// and reaps them before the init's own exit completes. So the init is what
// supervise kills and what it waits for.
func supervise(ctx context.Context, proc *process, bwrap *os.Process, st *status, uid int) error {
	// bwrap reports the init's pid right after creating it, or closes the
	// status pipe when it fails before; ctx is not watched meanwhile so
	// that a kill never races the sandbox's creation.
	<-st.initKnown
	init := openInit(st.initPID, bwrap.Pid, uid)
	defer init.close()
	var cause error
	select {
	case <-proc.exited:
	case <-ctx.Done():
		select {
		case <-proc.exited: // it ended on its own just in time
		default:
			cause = context.Cause(ctx)
			if !init.kill() {
				// No sandbox yet, or its init has ended: killing bwrap is
				// enough, --die-with-parent takes the rest.
				_ = bwrap.Kill() // fails only when it has exited
			}
		}
	}
	<-proc.exited
	// bwrap exits as soon as its init reports the command's status, while
	// the init may still be taking the sandbox down.
	init.wait()
	<-st.done
	return cause
}

// process is a started bwrap, waited for by its own goroutine.
type process struct {
	exited chan struct{} // closed once Wait has returned
	err    error         // Wait's error; read after exited
}

// start starts cmd from a goroutine locked to its OS thread until cmd has
// exited. bwrap's --die-with-parent (PR_SET_PDEATHSIG) fires when the
// thread that forked it exits, not the agent process: without the lock, an
// unrelated goroutine ending while locked to that thread would kill the job.
func start(cmd *exec.Cmd) (*process, error) {
	p := &process{exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// pipes are the three pipes between the agent and bwrap.
type pipes struct {
	outR, outW       *os.File // the job's output
	statusR, statusW *os.File // bwrap's JSON status
	argsR, argsW     *os.File // bwrap's arguments
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	var all []*os.File
	for _, pair := range []struct{ r, w **os.File }{
		{&p.outR, &p.outW}, {&p.statusR, &p.statusW}, {&p.argsR, &p.argsW},
	} {
		*pair.r, *pair.w, err = os.Pipe()
		if err != nil {
			closeFiles(all...)
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		all = append(all, *pair.r, *pair.w)
	}
	return &p, nil
}

// closeChildEnds closes the agent's copies of the ends bwrap holds, so that
// reads see EOF once bwrap and its sandbox are gone.
func (p *pipes) closeChildEnds() { closeFiles(p.outW, p.statusW, p.argsR) }

func (p *pipes) closeParentEnds() { closeFiles(p.outR, p.statusR, p.argsW) }

func closeFiles(files ...*os.File) {
	for _, f := range files {
		_ = f.Close() // pipes: nothing is lost on close
	}
}

// drain copies src to dst until EOF. After a write error it keeps reading
// and discards the rest, so that writers never block, and returns that error.
func drain(dst io.Writer, src io.Reader) error {
	if _, err := io.Copy(dst, src); err != nil {
		_, _ = io.Copy(io.Discard, src)
		return fmt.Errorf("copy job output: %w", err)
	}
	return nil
}

// prefixBuffer keeps the first max bytes written to it.
type prefixBuffer struct {
	max int
	buf bytes.Buffer
}

func (b *prefixBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (b *prefixBuffer) String() string { return b.buf.String() }
