package bwrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// fixedHead is what every sandbox's argv starts with.
var fixedHead = []string{
	"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
	"--disable-userns",
	"--uid", "100003", "--gid", "100003",
	"--hostname", "nimbus",
	"--die-with-parent", "--new-session",
	"--cap-drop", "ALL",
	"--clearenv",
	"--json-status-fd", "3",
	"--unshare-net",
	"--ro-bind", "/usr", "/usr",
}

var etcArgs = []string{
	"--ro-bind-try", "/etc/passwd", "/etc/passwd",
	"--ro-bind-try", "/etc/group", "/etc/group",
	"--ro-bind-try", "/etc/hosts", "/etc/hosts",
	"--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf",
	"--ro-bind-try", "/etc/nsswitch.conf", "/etc/nsswitch.conf",
	"--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
	"--ro-bind-try", "/etc/localtime", "/etc/localtime",
	"--ro-bind-try", "/etc/ssl", "/etc/ssl",
	"--ro-bind-try", "/etc/ca-certificates", "/etc/ca-certificates",
	"--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
}

var mountsArgs = []string{
	"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
	"--bind", "/work/job-1-123", "/workspace",
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestSandboxArgs(t *testing.T) {
	merged := []rootEntry{{path: "/bin", link: "usr/bin"}, {path: "/lib", link: "usr/lib"}, {path: "/lib64", link: "usr/lib64"}, {path: "/sbin", link: "usr/sbin"}}
	base := sandbox{uid: 100003, gid: 100003, workspace: "/work/job-1-123", root: merged, statusFD: 3, argv: []string{"make", "-j2"}}
	mergedArgs := []string{
		"--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
		"--symlink", "usr/lib64", "/lib64", "--symlink", "usr/sbin", "/sbin",
	}
	defaultEnv := []string{"--setenv", "HOME", "/workspace", "--setenv", "PATH", DefaultEnvPath}

	tests := []struct {
		name   string
		modify func(s *sandbox)
		want   []string
		cmd    []string
	}{
		{
			name:   "merged usr, no env",
			modify: func(*sandbox) {},
			want: concat(fixedHead, mergedArgs, etcArgs, mountsArgs,
				[]string{"--remount-ro", "/", "--chdir", "/workspace"}, defaultEnv),
			cmd: []string{"/usr/bin/env", "--", "make", "-j2"},
		},
		{
			name: "split usr binds directories",
			modify: func(s *sandbox) {
				s.root = []rootEntry{{path: "/bin"}, {path: "/lib"}, {path: "/lib64", link: "/lib"}}
			},
			want: concat(fixedHead,
				[]string{"--ro-bind", "/bin", "/bin", "--ro-bind", "/lib", "/lib", "--symlink", "/lib", "/lib64"},
				etcArgs, mountsArgs, []string{"--remount-ro", "/", "--chdir", "/workspace"}, defaultEnv),
			cmd: []string{"/usr/bin/env", "--", "make", "-j2"},
		},
		{
			name: "binds in order after the workspace",
			modify: func(s *sandbox) {
				s.binds = []executor.Bind{
					{Source: "/srv/runner", Target: "/runner"},
					{Source: "/srv/cache", Target: "/workspace/.cache", ReadOnly: true},
				}
			},
			want: concat(fixedHead, mergedArgs, etcArgs, mountsArgs,
				[]string{"--bind", "/srv/runner", "/runner", "--ro-bind", "/srv/cache", "/workspace/.cache"},
				[]string{"--remount-ro", "/", "--chdir", "/workspace"}, defaultEnv),
			cmd: []string{"/usr/bin/env", "--", "make", "-j2"},
		},
		{
			name: "env sorted, PATH and HOME from the spec win",
			modify: func(s *sandbox) {
				s.env = map[string]string{"PATH": "/opt/bin", "HOME": "/home/ci", "CI": "true", "A": "x y\nz"}
			},
			want: concat(fixedHead, mergedArgs, etcArgs, mountsArgs,
				[]string{"--remount-ro", "/", "--chdir", "/workspace",
					"--setenv", "A", "x y\nz", "--setenv", "CI", "true",
					"--setenv", "HOME", "/home/ci", "--setenv", "PATH", "/opt/bin"}),
			cmd: []string{"/usr/bin/env", "--", "make", "-j2"},
		},
		{
			name: "argv that looks like options stays after --",
			modify: func(s *sandbox) {
				s.argv = []string{"--bind", "/", "/"}
			},
			want: concat(fixedHead, mergedArgs, etcArgs, mountsArgs,
				[]string{"--remount-ro", "/", "--chdir", "/workspace"}, defaultEnv),
			cmd: []string{"/usr/bin/env", "--", "--bind", "/", "/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.modify(&s)
			opts, cmd := s.args()
			if diff := cmp.Diff(tt.want, opts); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.cmd, cmd); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJobEnvDoesNotModifySpec(t *testing.T) {
	env := map[string]string{"A": "1"}
	got := jobEnv(env)
	if diff := cmp.Diff(map[string]string{"A": "1"}, env); diff != "" {
		t.Errorf("spec env changed (-want +got):\n%s", diff)
	}
	want := map[string]string{"A": "1", "PATH": DefaultEnvPath, "HOME": "/workspace"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("job env (-want +got):\n%s", diff)
	}
}

func TestHostRootEntries(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib", "lib64"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"bin": "usr/bin", "lib": "usr/lib", "sbin": "/usr/sbin"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := hostRootEntries(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []rootEntry{
		{path: "/bin", link: "usr/bin"},
		{path: "/sbin", link: "/usr/sbin"},
		{path: "/lib", link: "usr/lib"},
		{path: "/lib64"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(rootEntry{})); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	if err := os.WriteFile(filepath.Join(root, "libx32"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := hostRootEntries(root); err == nil || !strings.Contains(err.Error(), "libx32") {
		t.Errorf("a regular file libx32: got error %v, want one naming it", err)
	}
}

func TestValidateSpec(t *testing.T) {
	dir := t.TempDir()
	ok := executor.Spec{JobID: "j", Argv: []string{"true"}, Binds: []executor.Bind{{Source: dir, Target: "/x"}}}
	tests := []struct {
		name    string
		modify  func(s *executor.Spec)
		wantErr string // substring; empty: valid
	}{
		{"valid", func(*executor.Spec) {}, ""},
		{"no argv", func(s *executor.Spec) { s.Argv = nil }, "argv: no command"},
		{"empty command", func(s *executor.Spec) { s.Argv = []string{""} }, "argv: no command"},
		{"assignment as command", func(s *executor.Spec) { s.Argv = []string{"A=b"} }, `argv[0] "A=b": contains '='`},
		{"assignment as argument is fine", func(s *executor.Spec) { s.Argv = []string{"make", "A=b"} }, ""},
		{"NUL in argument", func(s *executor.Spec) { s.Argv = []string{"echo", "a\x00--bind"} }, "argv[1]: contains a NUL byte"},
		{"empty env name", func(s *executor.Spec) { s.Env = map[string]string{"": "x"} }, `invalid variable name ""`},
		{"= in env name", func(s *executor.Spec) { s.Env = map[string]string{"A=B": "x"} }, `invalid variable name "A=B"`},
		{"NUL in env value", func(s *executor.Spec) { s.Env = map[string]string{"A": "x\x00"} }, "env A: value contains a NUL byte"},
		{"relative bind source", func(s *executor.Spec) { s.Binds = []executor.Bind{{Source: "rel", Target: "/x"}} }, `binds[0]: path "rel": must be absolute`},
		{"relative bind target", func(s *executor.Spec) { s.Binds = []executor.Bind{{Source: dir, Target: "x"}} }, `binds[0]: path "x": must be absolute`},
		{"bind over root", func(s *executor.Spec) { s.Binds = []executor.Bind{{Source: dir, Target: "/a/.."}} }, "binds[0]: target /"},
		{"missing bind source", func(s *executor.Spec) { s.Binds = []executor.Bind{{Source: dir + "/nope", Target: "/x"}} }, "binds[0]: source: stat"},
		{"negative timeout", func(s *executor.Spec) { s.Timeout = -1 }, "timeout -1ns: negative"},
		{"negative slot", func(s *executor.Spec) { s.Slot = -1 }, "slot -1: must be between 0 and 10"},
		{"slot too large", func(s *executor.Spec) { s.Slot = 11 }, "slot 11: must be between 0 and 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.modify(&s)
			err := validateSpec(s, 10)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("validateSpec: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("validateSpec: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{WorkRoot: "/w"}, ""},
		{"no work root", Options{}, "work root: required"},
		{"relative work root", Options{WorkRoot: "w"}, `work root "w": must be absolute`},
		{"relative path", Options{WorkRoot: "/w", Path: "bwrap"}, `path "bwrap": must be absolute`},
		{"negative uid base", Options{WorkRoot: "/w", UIDBase: -5}, "uid base -5"},
		{"unknown network", Options{WorkRoot: "/w", Network: 7}, "network Network(7): only none is supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadProcStat(t *testing.T) {
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{ppid: os.Getppid(), uid: os.Getuid(), nsInit: os.Getpid() == 1}
	if diff := cmp.Diff(want, st, cmp.AllowUnexported(procStat{})); diff != "" {
		t.Errorf("readProcStat(self) (-want +got):\n%s", diff)
	}
	if _, err := readProcStat(-1); err == nil {
		t.Error("readProcStat(-1): no error")
	}
}
