package bwrap

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

const hybridMountinfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

func TestLocateCgroups(t *testing.T) {
	controllers := func(have string) func(string) (string, error) {
		return func(string) (string, error) { return have, nil }
	}
	tests := []struct {
		name, mountinfo, self, have string
		want                        map[string]string
		v2                          bool
		ctls                        []string // default: all three
		err                         string
	}{
		{
			name:      "hybrid v1",
			mountinfo: hybridMountinfo,
			self:      "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n",
			want: map[string]string{
				"cpu":    "/sys/fs/cgroup/cpu,cpuacct",
				"memory": "/sys/fs/cgroup/memory/process_api/abc",
				"pids":   "/sys/fs/cgroup/pids",
			},
		},
		{
			name:      "unified v2 under systemd",
			mountinfo: "25 21 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
			self:      "0::/system.slice/nimbus.service\n",
			have:      "cpuset cpu io memory pids",
			v2:        true,
			want:      map[string]string{"": "/sys/fs/cgroup/system.slice/nimbus.service"},
		},
		{
			name:      "v2 in a container whose cgroup is the mount's root",
			mountinfo: "600 590 0:40 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			self:      "0::/docker/abc/sub\n",
			have:      "cpu memory pids",
			v2:        true,
			want:      map[string]string{"": "/sys/fs/cgroup/sub"},
		},
		{
			name:      "v2 without cpu: no CPU limits",
			mountinfo: "25 21 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			self:      "0::/user.slice/user-0.slice/session-3.scope\n",
			have:      "memory pids",
			v2:        true,
			ctls:      []string{"memory", "pids"},
			want:      map[string]string{"": "/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope"},
		},
		{
			name:      "v2 without delegation",
			mountinfo: "25 21 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
			self:      "0::/user.slice\n",
			have:      "cpu io",
			err:       "lacks the controllers [memory pids]",
		},
		{
			name:      "v1 without a cpu hierarchy",
			mountinfo: "34 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n38 30 0:35 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
			self:      "8:pids:/a\n4:memory:/a\n0::/\n",
			ctls:      []string{"memory", "pids"},
			want:      map[string]string{"memory": "/sys/fs/cgroup/memory/a", "pids": "/sys/fs/cgroup/pids/a"},
		},
		{
			name:      "v1 missing pids",
			mountinfo: hybridMountinfo,
			self:      "4:memory:/\n1:cpu,cpuacct:/\n0::/\n",
			err:       "such a mix is not supported",
		},
		{
			name:      "no cgroups",
			mountinfo: "22 1 0:21 / /proc rw - proc proc rw\n",
			self:      "0::/\n",
			err:       "no hierarchy offers",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := locateCgroups(tt.mountinfo, tt.self, controllers(tt.have))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.v2 != tt.v2 {
				t.Errorf("v2 = %v, want %v", got.v2, tt.v2)
			}
			wantCtls := tt.ctls
			if wantCtls == nil {
				wantCtls = []string{"memory", "pids", "cpu"}
			}
			if diff := cmp.Diff(wantCtls, got.controllers); diff != "" {
				t.Errorf("controllers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got.dirs); diff != "" {
				t.Errorf("dirs (-want +got):\n%s", diff)
			}
			for c, d := range got.dirs {
				if p := got.hier[c].procPath(d); !strings.HasSuffix(tt.self, p+"\n") && !strings.Contains(tt.self, ":"+p+"\n") {
					t.Errorf("procPath(%s) = %s, not in %q", d, p, tt.self)
				}
			}
		})
	}
}

func TestParseMountinfoEscapes(t *testing.T) {
	got, err := parseMountinfo(`100 1 7:0 /job-1/workspace /work\040dir/slot-0 rw,nosuid shared:5 - ext4 /dev/loop0 rw,discard` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []mountEntry{{Root: "/job-1/workspace", Point: "/work dir/slot-0", FSType: "ext4", Source: "/dev/loop0",
		SuperOpts: []string{"rw", "discard"}, MountOpts: []string{"rw", "nosuid"}}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mountEntry{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := parseMountinfo("1 2 3\n"); err == nil {
		t.Error("a short line parsed")
	}
}

// fakeCgroupV2 lays out, under a temporary directory, the files of a v2
// cgroup that the code writes, as the kernel would have them.
func fakeCgroupV2(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"cgroup.controllers", "cgroup.subtree_control", "cgroup.procs", "cgroup.kill",
		"memory.max", "memory.swap.max", "memory.oom.group", "memory.events", "cpu.max", "pids.max"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCgroupV2Files checks, on a fake cgroup v2 tree, what a sandbox's
// cgroup is given and how its OOM kills are read; the real v2 path cannot
// run on a cgroup v1 host.
func TestCgroupV2Files(t *testing.T) {
	root := t.TempDir()
	agent := filepath.Join(root, "agent.service")
	if err := os.Mkdir(agent, 0o755); err != nil {
		t.Fatal(err)
	}
	fakeCgroupV2(t, agent)
	os.WriteFile(filepath.Join(agent, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644)
	group := filepath.Join(agent, "nimbus-x")
	if err := os.Mkdir(group, 0o755); err != nil {
		t.Fatal(err)
	}
	fakeCgroupV2(t, group)
	tree, err := newCgroupV2(cgroupHierarchy{point: root, root: "/", v2: true, id: "0"}, agent, "nimbus-x", []string{"memory", "pids", "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{agent, group} {
		if b, _ := os.ReadFile(filepath.Join(d, "cgroup.subtree_control")); string(b) != "+memory +pids +cpu" {
			t.Errorf("%s: subtree_control %q", d, b)
		}
	}
	// The kernel makes a cgroup's files on mkdir; the fake makes them
	// before the code writes them.
	orig := filepath.Join(group, "slot-1")
	if err := os.Mkdir(orig, 0o755); err != nil {
		t.Fatal(err)
	}
	fakeCgroupV2(t, orig)
	s := &sandboxV2{tree: tree, dir: orig, fd: -1}
	if err := s.setLimits(executor.Limits{CPUs: 1.5, Memory: 2 << 30, Pids: 100}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range []string{"cpu.max", "memory.max", "memory.swap.max", "memory.oom.group", "pids.max"} {
		b, _ := os.ReadFile(filepath.Join(orig, f))
		got[f] = string(b)
	}
	want := map[string]string{"cpu.max": "150000 100000", "memory.max": "2147483648", "memory.swap.max": "0", "memory.oom.group": "1", "pids.max": "100"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("limit files (-want +got):\n%s", diff)
	}
	os.WriteFile(filepath.Join(orig, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 1\n"), 0o644)
	if n, err := s.oomKills(); err != nil || n != 1 {
		t.Errorf("oomKills = %d, %v; want 1", n, err)
	}
	// start clones into the cgroup through its descriptor.
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	s.fd = 42
	cmd.Path = filepath.Join(root, "missing") // Start fails: nothing is cloned
	if _, err := s.start(cmd); err == nil || !cmd.SysProcAttr.UseCgroupFD || cmd.SysProcAttr.CgroupFD != 42 {
		t.Errorf("start: %v, UseCgroupFD %v, CgroupFD %d", err, cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD)
	}
}

func TestCgroupV1OOMKills(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), 0o644)
	s := &sandboxV1{dirs: map[string]string{"memory": dir}}
	if n, err := s.oomKills(); err != nil || n != 3 {
		t.Errorf("oomKills = %d, %v; want 3", n, err)
	}
}

// FuzzParseKernelTables feeds any text to the parsers of
// /proc/self/mountinfo and /proc/<pid>/cgroup: no panic, and every cgroup
// path they accept is absolute.
func FuzzParseKernelTables(f *testing.F) {
	f.Add(hybridMountinfo)
	f.Add(`100 1 7:0 /job-1/workspace /work\040dir/slot-0 rw - ext4 /dev/loop0 rw,discard`)
	f.Add("9:name=systemd:/\n8:pids:/\n0::/a\\b\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = parseMountinfo(text)
		if lines, err := parseProcCgroup(text); err == nil {
			for _, l := range lines {
				if !strings.HasPrefix(l.path, "/") {
					t.Errorf("cgroup path %q is not absolute", l.path)
				}
			}
		}
	})
}

// TestCPULimitNeedsTheController: where the agent's cgroup has no cpu
// controller, a CPU limit is refused rather than ignored.
func TestCPULimitNeedsTheController(t *testing.T) {
	dir := t.TempDir()
	v1 := &cgroupV1{ctls: []string{"memory", "pids"}, groups: map[string]string{"memory": dir, "pids": dir}}
	v2 := &cgroupV2{group: dir, ctls: []string{"memory", "pids"}}
	for _, tree := range []cgroupTree{v1, v2} {
		if _, err := tree.newSandbox("job", executor.Limits{CPUs: 1}); !errors.Is(err, errNoCPUController) {
			t.Errorf("%T: %v, want %v", tree, err, errNoCPUController)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("a refused sandbox left %d entries", len(entries))
	}
}
