package bwrap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sandboxInit is the init (pid 1) of a sandbox's pid namespace, bwrap's
// reaper, held by a pidfd so that no signal can reach another process that
// reuses its pid. When the init dies, the kernel kills every other process
// of the namespace and reaps them before the init's own exit completes, so
// its end is the end of the whole sandbox. The zero value (fd -1 after
// openInit) holds nothing; its methods do nothing.
type sandboxInit struct {
	fd int
}

// openInit opens the init whose host pid bwrap (host pid bwrapPID)
// reported, after checking that the process is still that init: bwrap's
// child, or, if bwrap has already exited, a pid namespace's pid 1 running
// as the sandbox's uid.
func openInit(pid, bwrapPID, uid int) sandboxInit {
	if pid <= 0 {
		return sandboxInit{fd: -1}
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return sandboxInit{fd: -1} // it has ended and been reaped
	}
	// Checked after opening: the pidfd holds whatever process had the pid
	// then, and the check confirms it is the init.
	st, err := readProcStat(pid)
	if err != nil || !(st.ppid == bwrapPID || (st.nsInit && st.uid == uid)) {
		unix.Close(fd)
		return sandboxInit{fd: -1}
	}
	return sandboxInit{fd: fd}
}

// kill sends SIGKILL to the init; false when it holds no process or the
// process had already exited.
func (s sandboxInit) kill() bool {
	return s.fd >= 0 && unix.PidfdSendSignal(s.fd, unix.SIGKILL, nil, 0) == nil
}

// wait blocks until the init has exited, hence every process of the
// sandbox with it. It leaves at most a zombie for its parent to reap.
func (s sandboxInit) wait() {
	if s.fd < 0 {
		return
	}
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if !errors.Is(err, unix.EINTR) {
			return // readable; any other error means the fd is unusable
		}
	}
}

func (s sandboxInit) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
	}
}

// procStat is what openInit checks about a process.
type procStat struct {
	ppid   int
	uid    int  // real uid
	nsInit bool // pid 1 of a pid namespace below the host's
}

// readProcStat reads /proc/<pid>/status.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procStat{}, err
	}
	var st procStat
	var seen int
	for line := range strings.Lines(string(b)) {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch {
		case key == "PPid" && len(f) == 1:
			st.ppid, err = strconv.Atoi(f[0])
			seen++
		case key == "Uid" && len(f) == 4:
			st.uid, err = strconv.Atoi(f[0])
			seen++
		case key == "NSpid" && len(f) >= 1:
			st.nsInit = len(f) > 1 && f[len(f)-1] == "1"
			seen++
		}
		if err != nil {
			return procStat{}, fmt.Errorf("parse /proc/%d/status: %s: %w", pid, key, err)
		}
	}
	if seen != 3 {
		return procStat{}, fmt.Errorf("parse /proc/%d/status: %s", pid, bytes.TrimSpace(b[:min(len(b), 80)]))
	}
	return st, nil
}
