// Package execinit is `nimbus container-init`: the first process of a
// sandbox made before its job (a Docker executor's container, a warm
// bubblewrap sandbox), which waits for the job's command and execs it.
package execinit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Command is what an executor sends the init, as one JSON line (Line),
// once the sandbox's network is in place: the workload to exec.
type Command struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

// maxCommand bounds the init's one line.
const maxCommand = 4 << 20

// Main is `nimbus container-init [--command FIFO] [--output FIFO]`, the
// first process of a sandbox made before its job (in a container, under
// Docker's own init, which reaps): it waits for its command, so that the
// container can be started (and its network namespace made ready, or the
// container kept warm) before the job runs, puts /dev/null on stdin and
// execs the command. The command comes through the --command named pipe,
// which the executor binds into the container and writes to directly (no
// daemon in between), or else on stdin; with --output, the job's stdout
// and stderr are that named pipe, which the executor reads directly. It
// returns only when it could not: 127 when the command is not found, 126
// when it cannot be executed, 125 for anything else, as a shell would.
func Main(args []string, stdin io.Reader, stderr io.Writer) int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "nimbus-init: "+format+"\n", args...)
		return code
	}
	var command, output string
	for len(args) > 0 {
		if len(args) < 2 || (args[0] != "--command" && args[0] != "--output") {
			return fail(125, "usage: container-init [--command FIFO] [--output FIFO]")
		}
		if args[0] == "--command" {
			command = args[1]
		} else {
			output = args[1]
		}
		args = args[2:]
	}
	if output != "" {
		// Blocking, as the job's stdout must be; the executor holds the
		// read end already.
		fd, err := unix.Open(output, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(125, "output pipe: %v", err)
		}
		if unix.Dup2(fd, 1) != nil || unix.Dup2(fd, 2) != nil {
			return fail(125, "output pipe: dup2")
		}
		unix.Close(fd)
	}
	if command != "" {
		// Blocks until the executor opens the pipe to write.
		f, err := os.Open(command)
		if err != nil {
			return fail(125, "%v", err)
		}
		defer f.Close()
		stdin = f
	}
	line, err := bufio.NewReaderSize(io.LimitReader(stdin, maxCommand), 64<<10).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fail(125, "read the command: %v", err)
	}
	var c Command
	if err := json.Unmarshal(line, &c); err != nil || len(c.Argv) == 0 || c.Argv[0] == "" {
		return fail(125, "no command given (%v)", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return fail(125, "%v", err)
	}
	if err := unix.Dup2(int(null.Fd()), 0); err != nil {
		return fail(125, "stdin: %v", err)
	}
	if c.Dir != "" {
		if err := os.Chdir(c.Dir); err != nil {
			return fail(125, "%v", err)
		}
	}
	path, err := lookPath(c.Argv[0], envValue(c.Env, "PATH"))
	if err != nil {
		return fail(127, "%s: %v", c.Argv[0], err)
	}
	err = syscall.Exec(path, c.Argv, c.Env)
	return fail(126, "exec %s: %v", path, err)
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// lookPath finds name on path, as a shell does.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("command not found")
}

// Line is c as the init reads it: JSON and a newline.
func (c Command) Line() []byte {
	b, _ := json.Marshal(c)
	return append(b, '\n')
}

// WriteInPlace rewrites the file at path with data, in the same inode: a
// sandbox that bound the file (a file bind follows its inode) sees the new
// contents.
func WriteInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrGone is AwaitReader's error when the sandbox ended first.
var ErrGone = errors.New("the sandbox ended before its init was ready")

// AwaitReader opens the write end of the named pipe at path once a reader
// (the init) holds its read end, polling, and returns it: kept open, it
// keeps the init waiting for what is written there. It gives up when ctx
// ends, timeout passes, or gone (nil: never) is closed (ErrGone).
func AwaitReader(ctx context.Context, path string, timeout time.Duration, gone <-chan struct{}) (*os.File, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.ENXIO) {
			return nil, fmt.Errorf("command pipe: %w", err)
		}
		select {
		case <-gone:
			return nil, ErrGone
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-deadline.C:
			return nil, fmt.Errorf("the init did not open its command pipe in %v", timeout)
		case <-tick.C:
		}
	}
}
