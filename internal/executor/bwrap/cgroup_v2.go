package bwrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// agentLeaf is the cgroup the agent's processes move to on cgroup v2, so
// that their cgroup may have controlled children.
const agentLeaf = "nimbus-agent"

// v2SetupMu serialises the set-up of the agent's v2 cgroup by the
// Executors of one process.
var v2SetupMu sync.Mutex

// cgroupV2 is an Executor's group on cgroup v2.
type cgroupV2 struct {
	hier  cgroupHierarchy
	group string
	ctls  []string // the controllers in use
}

var _ cgroupTree = (*cgroupV2)(nil)

func newCgroupV2(h cgroupHierarchy, agentDir, name string, ctls []string) (*cgroupV2, error) {
	v2SetupMu.Lock()
	defer v2SetupMu.Unlock()
	if err := enableControllers(agentDir, ctls); err != nil {
		return nil, err
	}
	t := &cgroupV2{hier: h, group: filepath.Join(agentDir, name), ctls: ctls}
	if err := os.Mkdir(t.group, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	if err := enableControllers(t.group, ctls); err != nil {
		return nil, err
	}
	if _, err := sweepGroup(t.group, t.kill); err != nil {
		return nil, fmt.Errorf("cgroups: remove leftovers: %w", err)
	}
	return t, nil
}

// enableControllers makes the controllers ctls available to the children
// of the cgroup at dir. A cgroup other than the root that holds processes
// cannot: they are moved to a leaf child first.
func enableControllers(dir string, ctls []string) error {
	enabled, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	var want []string
	for _, c := range ctls {
		if !slices.Contains(strings.Fields(string(enabled)), c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 {
		return nil
	}
	for range 3 { // processes may be forked into dir meanwhile
		err = writeCgroupFile(dir, "cgroup.subtree_control", strings.Join(want, " "))
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		if err := moveProcesses(dir, filepath.Join(dir, agentLeaf)); err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
	}
	if err != nil {
		return fmt.Errorf("cgroups: enable %s for the cgroups under %s: %w", strings.Join(want, " "), dir, err)
	}
	return nil
}

// moveProcesses moves every process of the cgroup at from into the cgroup
// at to, creating it.
func moveProcesses(from, to string) error {
	if err := os.Mkdir(to, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	pids, err := cgroupPIDs(from)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := writeCgroupFile(to, "cgroup.procs", strconv.Itoa(pid)); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("move process %d to %s: %w", pid, to, err)
		}
	}
	return nil
}

// kill kills the processes of the cgroup at dir: all at once through
// cgroup.kill (Linux ≥ 5.14), else one by one.
func (t *cgroupV2) kill(dir string) (int, error) {
	pids, err := cgroupPIDs(dir)
	if err != nil || len(pids) == 0 {
		return 0, err
	}
	if err := writeCgroupFile(dir, "cgroup.kill", "1"); err == nil {
		return len(pids), nil
	}
	return killCgroupProcs(t.hier, dir)
}

func (t *cgroupV2) newSandbox(name string, l executor.Limits) (sandboxCgroup, error) {
	if l.CPUs > 0 && !slices.Contains(t.ctls, "cpu") {
		return nil, errNoCPUController
	}
	s := &sandboxV2{tree: t, dir: filepath.Join(t.group, name), fd: -1}
	if err := os.Mkdir(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	if err := s.setLimits(l); err != nil {
		return nil, errors.Join(fmt.Errorf("set cgroup limits: %w", err), s.destroy())
	}
	fd, err := unix.Open(s.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open cgroup: %w", err), s.destroy())
	}
	s.fd = fd
	return s, nil
}

func (t *cgroupV2) close() error {
	return removeCgroup(t.group, t.kill)
}

// sandboxV2 is a sandbox's v2 cgroup.
type sandboxV2 struct {
	tree *cgroupV2
	dir  string
	fd   int // the directory, for CLONE_INTO_CGROUP
}

func (s *sandboxV2) setLimits(l executor.Limits) error {
	if l.Memory > 0 {
		if err := writeCgroupFile(s.dir, "memory.max", strconv.FormatInt(l.Memory, 10)); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(s.dir, "memory.swap.max")); err == nil {
			if err := writeCgroupFile(s.dir, "memory.swap.max", "0"); err != nil {
				return err
			}
		}
		// An OOM kill takes the whole sandbox down at once.
		if err := writeCgroupFile(s.dir, "memory.oom.group", "1"); err != nil {
			return err
		}
	}
	if l.CPUs > 0 {
		if err := writeCgroupFile(s.dir, "cpu.max", fmt.Sprintf("%d %d", cpuQuota(l.CPUs), cpuPeriod)); err != nil {
			return err
		}
	}
	if l.Pids > 0 {
		if err := writeCgroupFile(s.dir, "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
	}
	return nil
}

// start clones cmd's process straight into the cgroup.
func (s *sandboxV2) start(cmd *exec.Cmd) (bool, error) {
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = s.fd
	return true, cmd.Start()
}

func (s *sandboxV2) oomKills() (int64, error) {
	return readCounter(filepath.Join(s.dir, "memory.events"), "oom_kill")
}

func (s *sandboxV2) destroy() error {
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
	return removeCgroup(s.dir, s.tree.kill)
}
