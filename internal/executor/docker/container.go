package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// noNetworkHosts is /etc/hosts of a job without a network in a container
// whose network files are bound (a warm one).
const noNetworkHosts = "127.0.0.1\tlocalhost " + defaultHostname + "\n::1\tlocalhost " + defaultHostname + "\n"

// containerParams is what a container is made of, before any job runs in
// it.
type containerParams struct {
	name         string // part of the container's and workspace's names
	image        string
	readOnlyRoot bool
	limits       executor.Limits
	uid, gid     int
	binds        []executor.Bind
	// netFiles binds /etc/resolv.conf and /etc/hosts from files of the
	// container's directory, written once its network is built.
	netFiles bool
	labels   map[string]string
}

// container is a started container whose init waits on stdin for the
// workload's command, with its host directory.
type container struct {
	id       string
	dir      string // host directory: ws (the workspace) and etc
	etc      string
	netFiles bool
	command  string   // host path of the named pipe the init reads its command from
	out      *os.File // the read end of the named pipe of the job's stdout and stderr
	// hold is a write end of the output pipe of the executor's own,
	// until the init holds its own (a pipe without writers reads as
	// ended).
	hold *os.File
	// commandW, in a warm container, is the command pipe's write end,
	// opened once the init held its read end.
	commandW *os.File
	pid      int // the container's first process on the host, once known
}

func (c *container) short() string { return c.id[:min(12, len(c.id))] }

// makeContainer creates and starts a container of p. Its init
// waits for a command; nothing of a job runs in it yet. On error nothing
// of it is left.
func (e *Executor) makeContainer(ctx context.Context, p containerParams) (_ *container, err error) {
	dir, err := workspace.Create(e.opts.WorkRoot, p.name, p.uid, p.gid)
	if err != nil {
		return nil, err
	}
	c := &container{dir: dir, etc: filepath.Join(dir, "etc"), netFiles: p.netFiles}
	defer func() {
		if err != nil {
			e.destroy(context.WithoutCancel(ctx), c, e.log)
		}
	}()
	// The workspace and, beside it, the files the job's network provides
	// (written once the network exists; bound now).
	ws := filepath.Join(dir, "ws")
	for _, d := range []string{ws, c.etc} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chown(ws, p.uid, p.gid); err != nil {
		return nil, err
	}
	os.Chmod(ws, 0o700)
	ctl := filepath.Join(dir, "ctl")
	c.command = filepath.Join(ctl, "command")
	if err := os.Mkdir(ctl, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mkfifo(c.command, 0o400); err != nil {
		return nil, fmt.Errorf("command pipe: %w", err)
	}
	if err := os.Chown(c.command, p.uid, p.gid); err != nil {
		return nil, err
	}
	output := filepath.Join(ctl, "output")
	if err := unix.Mkfifo(output, 0o200); err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	if err := os.Chown(output, p.uid, p.gid); err != nil {
		return nil, err
	}
	if c.out, err = os.OpenFile(output, os.O_RDONLY|unix.O_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	if c.hold, err = os.OpenFile(output, os.O_WRONLY|unix.O_NONBLOCK, 0); err != nil {
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	binds := []string{e.opts.Init + ":" + initTarget + ":ro", ws + ":" + containerWS, ctl + ":" + ctlTarget + ":ro"}
	if p.netFiles {
		for _, name := range []string{"resolv.conf", "hosts"} {
			f := filepath.Join(c.etc, name)
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				return nil, err
			}
			binds = append(binds, f+":/etc/"+name+":ro")
		}
	}
	for _, b := range p.binds {
		m := b.Source + ":" + b.Target
		if b.ReadOnly {
			m += ":ro"
		}
		binds = append(binds, m)
	}
	if c.id, err = e.c.create(ctx, "nimbus-"+sanitize(p.name)+"-"+randomHex(4), e.config(p, binds)); err != nil {
		return nil, fmt.Errorf("create the container: %w", err)
	}
	if err := e.c.start(ctx, c.id); err != nil {
		return nil, fmt.Errorf("start the container: %w", err)
	}
	return c, nil
}

// destroy removes c's container and directory.
func (e *Executor) destroy(ctx context.Context, c *container, log *slog.Logger) {
	for _, f := range []*os.File{c.out, c.hold, c.commandW} {
		if f != nil {
			f.Close()
		}
	}
	if c.id != "" {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := e.c.remove(rctx, c.id); err != nil {
			log.Error("remove the container", "container", c.short(), "error", err)
		}
		cancel()
	}
	if err := workspace.Remove(c.dir); err != nil {
		log.Error("remove workspace", "error", err)
	}
}

// alive reports whether c's init still waits: its container runs, as the
// same process it was started as.
func (e *Executor) alive(ctx context.Context, c *container) error {
	st, err := e.c.inspect(ctx, c.id)
	switch {
	case err != nil:
		return err
	case !st.State.Running || st.State.Pid <= 0:
		return errors.New("the container is not running")
	case c.pid != 0 && st.State.Pid != c.pid:
		return errors.New("the container was restarted")
	}
	c.pid = st.State.Pid
	return nil
}
