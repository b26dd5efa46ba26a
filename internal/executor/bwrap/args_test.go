package bwrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

var mergedUsr = hostLayout{Symlinks: []symlink{{"usr/bin", "/bin"}, {"usr/lib", "/lib"}}}

// commonOptions are the options every sandbox starts with.
var commonOptions = []string{
	"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
	"--unshare-net", "--disable-userns", "--hostname", "nimbus",
	"--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
}

func TestBuildArgs(t *testing.T) {
	tests := []struct {
		name string
		inv  invocation
		want bwrapArgs
	}{
		{
			name: "minimal",
			inv: invocation{
				Argv:      []string{"true"},
				Workspace: "/w/job-1",
				Host:      mergedUsr,
			},
			want: bwrapArgs{
				Options: concat(commonOptions,
					[]string{
						"--setenv", "HOME", "/workspace",
						"--setenv", "PATH", defaultPath,
						"--ro-bind", "/usr", "/usr",
						"--symlink", "usr/bin", "/bin",
						"--symlink", "usr/lib", "/lib",
						"--perms", "0644", "--ro-bind-data", "6", "/etc/passwd",
						"--perms", "0644", "--ro-bind-data", "7", "/etc/group",
						"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
						"--bind", "/w/job-1", "/workspace",
						"--remount-ro", "/", "--chdir", "/workspace", "--info-fd", "4",
					}),
				Command: []string{"/bin/sh", "-c", wrapperScript, "nimbus-job", "true"},
			},
		},
		{
			name: "full",
			inv: invocation{
				Argv:      []string{"run.sh", "--jitconfig", "secret config"},
				Env:       map[string]string{"PATH": "/bin", "HOME": "/home/runner", "B": "2", "A": "1 2"},
				Binds:     []executor.Bind{{Source: "/srv/runner", Target: "/runner"}, {Source: "/cache", Target: "/workspace/cache", ReadOnly: true}},
				Workspace: "/w/job-2",
				Host:      hostLayout{Symlinks: []symlink{{"usr/bin", "/bin"}}, Dirs: []string{"/lib"}},
				Etc:       []string{"hosts", "ssl"},
			},
			want: bwrapArgs{
				Options: concat(commonOptions,
					[]string{
						"--setenv", "A", "1 2",
						"--setenv", "B", "2",
						"--setenv", "HOME", "/home/runner",
						"--setenv", "PATH", "/bin",
						"--ro-bind", "/usr", "/usr",
						"--symlink", "usr/bin", "/bin",
						"--ro-bind", "/lib", "/lib",
						"--ro-bind-try", "/etc/hosts", "/etc/hosts",
						"--ro-bind-try", "/etc/ssl", "/etc/ssl",
						"--perms", "0644", "--ro-bind-data", "6", "/etc/passwd",
						"--perms", "0644", "--ro-bind-data", "7", "/etc/group",
						"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
						"--bind", "/w/job-2", "/workspace",
						"--bind", "/srv/runner", "/runner",
						"--ro-bind", "/cache", "/workspace/cache",
						"--remount-ro", "/", "--chdir", "/workspace", "--info-fd", "4",
					}),
				Command: []string{"/bin/sh", "-c", wrapperScript, "nimbus-job", "run.sh", "--jitconfig", "secret config"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildArgs(tt.inv)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("buildArgs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildArgsKeepsSecretsOffTheCommandLine(t *testing.T) {
	args, err := buildArgs(invocation{
		Argv:      []string{"true"},
		Env:       map[string]string{"TOKEN": "s3cret"},
		Workspace: "/w",
	})
	if err != nil {
		t.Fatal(err)
	}
	if argv := strings.Join(args.Argv(), " "); strings.Contains(argv, "s3cret") {
		t.Errorf("bwrap's command line holds the environment: %s", argv)
	}
	if want := "--setenv\x00TOKEN\x00s3cret\x00"; !strings.Contains(string(args.OptionsData()), want) {
		t.Errorf("the --args data lacks %q", want)
	}
	if diff := cmp.Diff([]string{"--args", "3", "--"}, args.Argv()[:3]); diff != "" {
		t.Errorf("bwrap's command line (-want +got):\n%s", diff)
	}
}

func TestBuildArgsRejects(t *testing.T) {
	ok := invocation{Argv: []string{"true"}, Workspace: "/w"}
	tests := []struct {
		name   string
		modify func(*invocation)
		want   string
	}{
		{"no command", func(i *invocation) { i.Argv = nil }, "empty command"},
		{"empty program", func(i *invocation) { i.Argv = []string{""} }, "empty command"},
		{"NUL in argument", func(i *invocation) { i.Argv = []string{"echo", "a\x00b"} }, "argument 1 contains a NUL byte"},
		{"empty env name", func(i *invocation) { i.Env = map[string]string{"": "x"} }, "invalid environment variable name"},
		{"= in env name", func(i *invocation) { i.Env = map[string]string{"A=B": "x"} }, "invalid environment variable name"},
		{"NUL in env value", func(i *invocation) { i.Env = map[string]string{"A": "x\x00"} }, "A contains a NUL byte"},
		{"relative workspace", func(i *invocation) { i.Workspace = "w" }, "workspace"},
		{"relative bind source", func(i *invocation) { i.Binds = []executor.Bind{{Source: "src", Target: "/t"}} }, "bind source"},
		{"relative bind target", func(i *invocation) { i.Binds = []executor.Bind{{Source: "/src", Target: "t"}} }, "bind target"},
		{"unclean bind target", func(i *invocation) { i.Binds = []executor.Bind{{Source: "/src", Target: "/a/../etc"}} }, "bind target"},
		{"bind over root", func(i *invocation) { i.Binds = []executor.Bind{{Source: "/src", Target: "/"}} }, "reserved"},
		{"bind over workspace", func(i *invocation) { i.Binds = []executor.Bind{{Source: "/src", Target: "/workspace"}} }, "reserved"},
		{"bind into proc", func(i *invocation) { i.Binds = []executor.Bind{{Source: "/src", Target: "/proc/sys"}} }, "reserved"},
		{"bind into dev", func(i *invocation) { i.Binds = []executor.Bind{{Source: "/src", Target: "/dev/kvm"}} }, "reserved"},
		{"unknown network", func(i *invocation) { i.Network = network(7) }, "network mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := ok
			tt.modify(&inv)
			_, err := buildArgs(inv)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("buildArgs error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func FuzzBuildArgs(f *testing.F) {
	f.Add("echo", "hi", "KEY", "value", "/src", "/dst")
	f.Add("", "", "", "", "", "")
	f.Add("a\x00", "b", "K=V", "x\x00", "rel", "/proc")
	f.Fuzz(func(t *testing.T, prog, arg, key, value, source, target string) {
		inv := invocation{
			Argv:      []string{prog, arg},
			Env:       map[string]string{key: value},
			Binds:     []executor.Bind{{Source: source, Target: target}},
			Workspace: "/w",
			Host:      mergedUsr,
		}
		args, err := buildArgs(inv)
		if err != nil {
			return
		}
		// Whatever is accepted must survive the trip through --args and
		// execve: no NUL anywhere.
		for _, a := range append(args.Options, args.Command...) {
			if strings.IndexByte(a, 0) >= 0 {
				t.Fatalf("accepted an argument holding NUL: %q", a)
			}
		}
		if n := strings.Count(string(args.OptionsData()), "\x00"); n != len(args.Options) {
			t.Fatalf("--args data holds %d NULs for %d options", n, len(args.Options))
		}
	})
}

func TestJobEnv(t *testing.T) {
	got := jobEnv(map[string]string{"Z": "1", "HOME": "/h"})
	want := [][2]string{{"HOME", "/h"}, {"PATH", defaultPath}, {"Z", "1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("jobEnv (-want +got):\n%s", diff)
	}
}

func TestProbeHost(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib", "lib64"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	got, err := probeHost(root)
	if err != nil {
		t.Fatal(err)
	}
	want := hostLayout{
		Symlinks: []symlink{{"usr/bin", "/bin"}, {"usr/lib", "/lib"}},
		Dirs:     []string{"/lib64"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("probeHost (-want +got):\n%s", diff)
	}
}

func TestAccounts(t *testing.T) {
	got := newAccounts(100007, 100007)
	wantPasswd := "root:x:0:0:root:/root:/usr/sbin/nologin\n" +
		"nimbus:x:100007:100007:Nimbus job:/workspace:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	wantGroup := "root:x:0:\nnimbus:x:100007:\nnogroup:x:65534:\n"
	if diff := cmp.Diff(wantPasswd, string(got.Passwd)); diff != "" {
		t.Errorf("passwd (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantGroup, string(got.Group)); diff != "" {
		t.Errorf("group (-want +got):\n%s", diff)
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	got, err := Options{WorkRoot: "/var/lib/nimbus/work/"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.BwrapPath != DefaultBwrapPath || got.UIDBase != DefaultUIDBase || got.WorkRoot != "/var/lib/nimbus/work" || got.Logger == nil {
		t.Errorf("defaults: %+v", got)
	}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no work root", Options{}, "WorkRoot is required"},
		{"relative work root", Options{WorkRoot: "work"}, "WorkRoot"},
		{"relative bwrap", Options{WorkRoot: "/w", BwrapPath: "bwrap"}, "BwrapPath"},
		{"negative uid base", Options{WorkRoot: "/w", UIDBase: -1}, "UIDBase"},
		{"etc escapes", Options{WorkRoot: "/w", Etc: []string{"../shadow"}}, "Etc entry"},
		{"etc absolute", Options{WorkRoot: "/w", Etc: []string{"/etc/shadow"}}, "Etc entry"},
		{"etc passwd", Options{WorkRoot: "/w", Etc: []string{"passwd"}}, "Etc entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.opts.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("withDefaults error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func concat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
