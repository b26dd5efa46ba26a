package bwrap

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// initProcess is the sandbox's init (pid 1 of its pid namespace) seen from
// the host, held through a pidfd so that a recycled pid is never signalled.
// When it dies the kernel kills every other process of the namespace, and
// its exit is only reported once they are all gone.
type initProcess struct {
	pid   int
	pidfd int
}

// openInit takes hold of the sandbox init pid, bwrap's child. It returns nil
// and no error when that process is already gone.
func openInit(pid, bwrapPID int) (*initProcess, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	// Between bwrap reporting the pid and pidfd_open the init may have died
	// and its pid been reused: only bwrap's child is ours.
	if ppid, err := parentPID(pid); err != nil || ppid != bwrapPID {
		_ = unix.Close(fd)
		return nil, nil
	}
	return &initProcess{pid: pid, pidfd: fd}, nil
}

// kill sends SIGKILL to the init, which takes the whole namespace down.
func (p *initProcess) kill() error {
	err := unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill sandbox init %d: %w", p.pid, err)
	}
	return nil
}

// wait blocks until the init has exited, hence until no process of its pid
// namespace is left.
func (p *initProcess) wait() error {
	fds := []unix.PollFd{{Fd: int32(p.pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for sandbox init %d: %w", p.pid, err)
		}
		return nil
	}
}

func (p *initProcess) close() {
	_ = unix.Close(p.pidfd)
}

// parentPID reads a process's parent pid from /proc/<pid>/stat.
func parentPID(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.Atoi(fields[1])
}
