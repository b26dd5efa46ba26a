package bwrap

import (
	"errors"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// markInheritedCloexec sets close-on-exec on every file descriptor of this
// process from 3 up. Go opens its own files close-on-exec, but descriptors
// the agent inherited (from a service manager, a shell, a test harness) are
// not, and would otherwise leak into every sandbox: bwrap passes whatever it
// inherits on to the job. Files meant for a child still reach it through
// exec.Cmd, which duplicates them in the child.
func markInheritedCloexec() error {
	err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	if err == nil || !(errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL)) {
		return err
	}
	// Before Linux 5.11: one descriptor at a time.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		unix.CloseOnExec(fd)
	}
	return nil
}
