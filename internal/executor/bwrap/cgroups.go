package bwrap

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// Cgroups. When the agent is root, every sandbox runs in a cgroup of its
// own, made before bwrap starts so that no process of the sandbox ever runs
// outside it. The cgroup carries the job's CPU, memory and pids limits,
// counts the kernel's OOM kills, and is the backstop that kills whatever of
// the sandbox is left when it ends.
//
// Layout: under the agent's own cgroup (per controller on cgroup v1; one
// tree on v2), a group per Executor named after its work root
// (nimbus-<hash>), and in it one cgroup per running sandbox. A new Executor
// on the same work root (the agent restarted after a crash) removes what the
// group still holds, killing its processes.
//
// cgroup v1 (hybrid hosts): bwrap is started from a locked OS thread that
// is moved alone (its tid written to each controller's "tasks") into the
// sandbox's cgroups for the fork, and moved back right after.
// cgroup v2: bwrap is cloned straight into the cgroup (CLONE_INTO_CGROUP,
// Linux ≥ 5.7). The agent's cgroup must have the memory and pids
// controllers, and cpu for CPU limits (systemd: Delegate=yes); the agent
// moves the processes of its own cgroup into a leaf, nimbus-agent, to
// enable them for the groups beside it (a v2 cgroup with processes cannot
// have controlled children).

// The controllers a sandbox's cgroup uses: memory and pids always; cpu when
// the agent's cgroup has it (a CPU limit needs it; without one, jobs share
// the CPUs as any processes do). Systemd does not enable cpu for slices and
// scopes by default.
var (
	requiredControllers = []string{"memory", "pids"}
	optionalControllers = []string{"cpu"}
)

// cgroupRemoveTimeout bounds the wait for a cgroup's killed processes to
// be gone.
const cgroupRemoveTimeout = 10 * time.Second

// cpuPeriod is the CFS bandwidth period (µs) of CPU limits.
const cpuPeriod = 100000

// cgroupTree holds the cgroups of one Executor's sandboxes.
type cgroupTree interface {
	// newSandbox makes the cgroup of one sandbox, with l set.
	newSandbox(name string, l executor.Limits) (sandboxCgroup, error)
	// close removes the Executor's group, killing what is left in it.
	close() error
}

// sandboxCgroup is one sandbox's cgroup.
type sandboxCgroup interface {
	// start starts cmd in the cgroup. Call it on a locked OS thread; when
	// it reports restored false, the thread could not be put back where it
	// was and must not run other goroutines (leave it locked to end it).
	start(cmd *exec.Cmd) (restored bool, err error)
	// oomKills is how many processes the kernel's OOM killer killed in
	// the cgroup.
	oomKills() (int64, error)
	// destroy kills every process left in the cgroup and removes it.
	destroy() error
}

// cgroupHierarchy is a mounted cgroup hierarchy: v2, or v1 with the
// controllers of its mount options.
type cgroupHierarchy struct {
	point string // where it is mounted
	root  string // the cgroup mounted there, as /proc/<pid>/cgroup names it
	v2    bool
	id    string // the hierarchy id in /proc/<pid>/cgroup ("0" for v2)
}

// dir is the directory of the cgroup that /proc/<pid>/cgroup names p.
func (h cgroupHierarchy) dir(p string) (string, error) {
	rel, ok := strings.CutPrefix(path.Clean(p), h.root)
	if !ok || (rel != "" && !strings.HasPrefix(rel, "/") && h.root != "/") {
		return "", fmt.Errorf("cgroup %s is outside the mounted hierarchy %s (at %s)", p, h.root, h.point)
	}
	return filepath.Join(h.point, rel), nil
}

// procPath is how /proc/<pid>/cgroup names the cgroup at dir.
func (h cgroupHierarchy) procPath(dir string) string {
	rel := strings.TrimPrefix(dir, h.point)
	return path.Join(h.root, "/"+rel)
}

// cgroupLayout is where the agent's own cgroups are.
type cgroupLayout struct {
	v2          bool
	controllers []string // those in use
	// v1: per controller, its hierarchy and the agent's cgroup in it. v2:
	// the one hierarchy under the key "".
	hier map[string]cgroupHierarchy
	dirs map[string]string
}

// procCgroupLine is one line of /proc/<pid>/cgroup.
type procCgroupLine struct {
	id          string
	controllers []string
	path        string
}

func parseProcCgroup(text string) ([]procCgroupLine, error) {
	var out []procCgroupLine
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		id, rest, ok1 := strings.Cut(line, ":")
		ctl, p, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("unreadable /proc cgroup line %q", line)
		}
		var ctls []string
		if ctl != "" {
			ctls = strings.Split(ctl, ",")
		}
		out = append(out, procCgroupLine{id: id, controllers: ctls, path: p})
	}
	return out, nil
}

// locateCgroups finds the agent's cgroups from its mountinfo and
// /proc/self/cgroup: cgroup v1 when a v1 hierarchy has each controller,
// else v2 when the agent's v2 cgroup offers them all (controllersOf reads
// a v2 cgroup's cgroup.controllers).
func locateCgroups(mountinfo, self string, controllersOf func(dir string) (string, error)) (cgroupLayout, error) {
	mounts, err := parseMountinfo(mountinfo)
	if err != nil {
		return cgroupLayout{}, err
	}
	lines, err := parseProcCgroup(self)
	if err != nil {
		return cgroupLayout{}, err
	}
	v1 := cgroupLayout{hier: map[string]cgroupHierarchy{}, dirs: map[string]string{}}
	var found, missing []string
	for _, c := range append(slices.Clone(requiredControllers), optionalControllers...) {
		h, dir, ok := locateV1(mounts, lines, c)
		if !ok {
			if slices.Contains(requiredControllers, c) {
				missing = append(missing, c)
			}
			continue
		}
		found = append(found, c)
		v1.hier[c], v1.dirs[c] = h, dir
	}
	v1.controllers = found
	if len(missing) == 0 {
		return v1, nil
	}
	if len(found) > 0 {
		return cgroupLayout{}, fmt.Errorf("cgroups: controllers %v are on cgroup v1 but %v are not; such a mix is not supported", found, missing)
	}
	var self2 *procCgroupLine
	for i := range lines {
		if lines[i].id == "0" && len(lines[i].controllers) == 0 {
			self2 = &lines[i]
		}
	}
	for _, m := range mounts {
		if m.FSType != "cgroup2" || self2 == nil {
			continue
		}
		h := cgroupHierarchy{point: m.Point, root: m.Root, v2: true, id: "0"}
		dir, err := h.dir(self2.path)
		if err != nil {
			continue
		}
		have, err := controllersOf(dir)
		if err != nil {
			return cgroupLayout{}, fmt.Errorf("cgroups: %w", err)
		}
		var lack, use []string
		for _, c := range append(slices.Clone(requiredControllers), optionalControllers...) {
			switch {
			case slices.Contains(strings.Fields(have), c):
				use = append(use, c)
			case slices.Contains(requiredControllers, c):
				lack = append(lack, c)
			}
		}
		if len(lack) > 0 {
			return cgroupLayout{}, fmt.Errorf("cgroups: the agent's cgroup %s lacks the controllers %v: delegate them to it (systemd: Delegate=yes in the agent's unit)", dir, lack)
		}
		return cgroupLayout{v2: true, controllers: use, hier: map[string]cgroupHierarchy{"": h}, dirs: map[string]string{"": dir}}, nil
	}
	return cgroupLayout{}, fmt.Errorf("cgroups: no hierarchy offers the controllers %v (is /sys/fs/cgroup mounted?)", requiredControllers)
}

// locateV1 finds controller c's v1 hierarchy and the agent's cgroup in it.
func locateV1(mounts []mountEntry, lines []procCgroupLine, c string) (cgroupHierarchy, string, bool) {
	var line *procCgroupLine
	for i := range lines {
		if lines[i].id != "0" && slices.Contains(lines[i].controllers, c) {
			line = &lines[i]
		}
	}
	if line == nil {
		return cgroupHierarchy{}, "", false
	}
	for _, m := range mounts {
		if m.FSType != "cgroup" || !slices.Contains(m.SuperOpts, c) {
			continue
		}
		h := cgroupHierarchy{point: m.Point, root: m.Root, id: line.id}
		if dir, err := h.dir(line.path); err == nil {
			return h, dir, true
		}
	}
	return cgroupHierarchy{}, "", false
}

// newCgroupTree makes the group of the Executor whose work root is
// workRoot under the agent's cgroups, removing what an earlier agent left
// in it.
func newCgroupTree(workRoot string) (cgroupTree, error) {
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	// The calling thread's cgroups, not /proc/self's: on cgroup v1 that is
	// the main thread's, which may be the one a sandbox's start moved into
	// the sandbox's cgroups for a moment. A goroutine that is not locked to
	// its thread never runs on such a thread.
	self, err := os.ReadFile("/proc/thread-self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	layout, err := locateCgroups(string(mountinfo), string(self), func(dir string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
		return string(b), err
	})
	if err != nil {
		return nil, err
	}
	name := groupName(workRoot)
	if layout.v2 {
		// An earlier Executor of this process may have moved it to the leaf.
		dir := layout.dirs[""]
		if filepath.Base(dir) == agentLeaf {
			dir = filepath.Dir(dir)
		}
		return newCgroupV2(layout.hier[""], dir, name, layout.controllers)
	}
	return newCgroupV1(layout, name)
}

// groupName names the cgroup group of the Executor on workRoot.
func groupName(workRoot string) string {
	return "nimbus-" + shortHash(workRoot)
}

// writeCgroupFile writes one value to a cgroup control file.
func writeCgroupFile(dir, name, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write %q to %s: %w", value, f.Name(), werr)
	}
	return cerr
}

// readCounter reads the value of key in a flat-keyed cgroup file
// ("key value" lines, as memory.events and memory.oom_control).
func readCounter(file, key string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no %s counter", file, key)
}

// cgroupPIDs lists the processes of the cgroup at dir.
func cgroupPIDs(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killCgroupProcs sends SIGKILL to each process of the cgroup at dir in
// hierarchy h. A pid is signalled through a pidfd opened before checking
// that the process holding it is in the cgroup, so that a pid reused by
// an unrelated process is never signalled. The agent's own process (whose
// forking thread passes through on cgroup v1) is never signalled.
func killCgroupProcs(h cgroupHierarchy, dir string) (left int, err error) {
	pids, err := cgroupPIDs(dir)
	if err != nil {
		return 0, err
	}
	want := h.procPath(dir)
	for _, pid := range pids {
		if pid == os.Getpid() {
			continue
		}
		left++
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone
		}
		if inCgroup(pid, h.id, want) {
			_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		_ = unix.Close(fd)
	}
	return left, nil
}

// inCgroup reports whether process pid is in the cgroup /proc names p in
// hierarchy id.
func inCgroup(pid int, id, p string) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	lines, err := parseProcCgroup(string(data))
	if err != nil {
		return false
	}
	for _, l := range lines {
		if l.id == id && l.path == p {
			return true
		}
	}
	return false
}

// removeCgroup kills what is left in the cgroup at dir (with kill, which
// may use cgroup.kill) and removes it and the cgroups under it, waiting
// (boundedly) for the killed processes to be gone.
func removeCgroup(dir string, kill func(dir string) (left int, err error)) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name()), kill); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(cgroupRemoveTimeout)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 50*time.Millisecond) {
		left, err := kill(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		if left == 0 {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) {
				return nil
			}
			if !errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %d processes still in it after %v", dir, left, cgroupRemoveTimeout)
		}
		time.Sleep(wait) // killed processes take a moment to be released
	}
}

// sweepGroup removes the sandbox cgroups left in the group at dir.
func sweepGroup(dir string, kill func(dir string) (int, error)) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if err := removeCgroup(filepath.Join(dir, e.Name()), kill); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// errNoCPUController refuses a CPU limit where the cpu controller is not
// available.
var errNoCPUController = errors.New("cpu limit: the agent's cgroup has no cpu controller (on cgroup v2, delegate it: systemd Delegate=yes)")

// cpuQuota is the CFS quota (µs per cpuPeriod) of a CPU limit.
func cpuQuota(cpus float64) int64 {
	return max(int64(cpus*cpuPeriod), 1000) // the kernel's smallest quota is 1 ms
}
