package bwrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// cgroupV1 is an Executor's group on cgroup v1: a directory in each
// controller's hierarchy.
type cgroupV1 struct {
	ctls   []string                   // the controllers in use
	hier   map[string]cgroupHierarchy // per controller
	groups map[string]string          // per controller: the group's directory
}

var _ cgroupTree = (*cgroupV1)(nil)

func newCgroupV1(layout cgroupLayout, name string) (*cgroupV1, error) {
	t := &cgroupV1{ctls: layout.controllers, hier: layout.hier, groups: map[string]string{}}
	for _, c := range t.ctls {
		t.groups[c] = filepath.Join(layout.dirs[c], name)
	}
	for _, c := range t.controllers() {
		g := t.groups[c]
		if err := os.Mkdir(g, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("cgroups: %w", err)
		}
		if _, err := sweepGroup(g, t.killer(c)); err != nil {
			return nil, fmt.Errorf("cgroups: remove leftovers: %w", err)
		}
	}
	return t, nil
}

// controllers lists one controller per distinct hierarchy (controllers
// mounted together share one).
func (t *cgroupV1) controllers() []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range t.ctls {
		if !seen[t.groups[c]] {
			seen[t.groups[c]] = true
			out = append(out, c)
		}
	}
	return out
}

func (t *cgroupV1) killer(c string) func(string) (int, error) {
	return func(dir string) (int, error) { return killCgroupProcs(t.hier[c], dir) }
}

func (t *cgroupV1) newSandbox(name string, l executor.Limits) (sandboxCgroup, error) {
	if l.CPUs > 0 && t.groups["cpu"] == "" {
		return nil, errNoCPUController
	}
	s := &sandboxV1{tree: t, dirs: map[string]string{}}
	for _, c := range t.ctls {
		s.dirs[c] = filepath.Join(t.groups[c], name)
	}
	for _, c := range t.controllers() {
		if err := os.Mkdir(s.dirs[c], 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("create cgroup: %w", err), s.destroy())
		}
	}
	if err := s.setLimits(l); err != nil {
		return nil, errors.Join(fmt.Errorf("set cgroup limits: %w", err), s.destroy())
	}
	return s, nil
}

func (t *cgroupV1) close() error {
	var errs []error
	for _, c := range t.controllers() {
		errs = append(errs, removeCgroup(t.groups[c], t.killer(c)))
	}
	return errors.Join(errs...)
}

// sandboxV1 is a sandbox's cgroup in each v1 hierarchy.
type sandboxV1 struct {
	tree *cgroupV1
	dirs map[string]string // per controller
}

func (s *sandboxV1) setLimits(l executor.Limits) error {
	if l.Memory > 0 {
		mem := s.dirs["memory"]
		if err := writeCgroupFile(mem, "memory.limit_in_bytes", strconv.FormatInt(l.Memory, 10)); err != nil {
			return err
		}
		// Memory plus swap, when swap is accounted: no swap past the limit.
		if _, err := os.Stat(filepath.Join(mem, "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeCgroupFile(mem, "memory.memsw.limit_in_bytes", strconv.FormatInt(l.Memory, 10)); err != nil {
				return err
			}
		} else if err := writeCgroupFile(mem, "memory.swappiness", "0"); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		cpu := s.dirs["cpu"]
		if err := writeCgroupFile(cpu, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		if err := writeCgroupFile(cpu, "cpu.cfs_quota_us", strconv.FormatInt(cpuQuota(l.CPUs), 10)); err != nil {
			return err
		}
	}
	if l.Pids > 0 {
		if err := writeCgroupFile(s.dirs["pids"], "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

// start moves the calling thread alone into the sandbox's cgroups, starts
// cmd (whose process is created where its forking thread is), and moves
// the thread back to the cgroups it was in.
func (s *sandboxV1) start(cmd *exec.Cmd) (restored bool, err error) {
	tid := unix.Gettid()
	orig, err := s.threadCgroups(tid)
	if err != nil {
		return true, err
	}
	var moved []string
	moveBack := func() bool {
		ok := true
		for _, c := range moved {
			if err := writeCgroupFile(orig[c], "tasks", strconv.Itoa(tid)); err != nil {
				ok = false
			}
		}
		return ok
	}
	for _, c := range s.tree.controllers() {
		if err := writeCgroupFile(s.dirs[c], "tasks", strconv.Itoa(tid)); err != nil {
			return moveBack(), fmt.Errorf("enter cgroup: %w", err)
		}
		moved = append(moved, c)
	}
	err = cmd.Start()
	return moveBack(), err
}

// threadCgroups returns, per controller, the directory of the cgroup
// thread tid of this process is in.
func (s *sandboxV1) threadCgroups(tid int) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/cgroup", tid))
	if err != nil {
		return nil, err
	}
	lines, err := parseProcCgroup(string(data))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range s.tree.controllers() {
		h := s.tree.hier[c]
		for _, l := range lines {
			if l.id == h.id {
				if out[c], err = h.dir(l.path); err != nil {
					return nil, err
				}
			}
		}
		if out[c] == "" {
			return nil, fmt.Errorf("thread %d: no %s cgroup", tid, c)
		}
	}
	return out, nil
}

func (s *sandboxV1) oomKills() (int64, error) {
	return readCounter(filepath.Join(s.dirs["memory"], "memory.oom_control"), "oom_kill")
}

func (s *sandboxV1) destroy() error {
	var errs []error
	for _, c := range s.tree.controllers() {
		errs = append(errs, removeCgroup(s.dirs[c], s.tree.killer(c)))
	}
	return errors.Join(errs...)
}
