package server

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/rbs"
)

var hash = rbs.RepoHash("laptop", "/home/alice/ws")

func TestStorageDirConfines(t *testing.T) {
	s, err := NewStorage(filepath.Join(t.TempDir(), "storage"))
	if err == nil {
		t.Fatal("a storage root under a 0700 temp dir was accepted; sandboxes could not reach it")
	}
	root := t.TempDir()
	os.Chmod(root, 0o711)
	os.Chmod(filepath.Dir(root), 0o711)
	s, err = NewStorage(filepath.Join(root, "storage"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Dir("acme", "alice", hash)
	if err != nil || got != filepath.Join(root, "storage", "acme", "alice", hash) {
		t.Fatalf("Dir = %q, %v", got, err)
	}
	for _, tc := range [][3]string{
		{"acme", "..", hash}, {"acme", "a/b", hash}, {"..", "alice", hash}, {"acme", "alice", "../../x"},
		{"acme", "", hash}, {"acme", ".", hash}, {"acme", "alice", strings.ToUpper(hash)}, {"acme", "alice\x00", hash},
		{"acme", "alice", hash + "/.."},
	} {
		if d, err := s.Dir(tc[0], tc[1], tc[2]); err == nil {
			t.Errorf("Dir(%q) = %q, want an error", tc, d)
		}
	}
}

func TestMirrorValidate(t *testing.T) {
	ok := Mirror{Workspace: "/home/a/ws", OutputUserRoot: "/home/a/.cache/bazel/_bazel_a", OutputBase: "/home/a/.cache/bazel/_bazel_a/abc"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Mirror{Workspace: "/tmp/x/ws", OutputUserRoot: "/tmp/x/out", OutputBase: "/elsewhere/ob"}).Validate(); err != nil {
		t.Errorf("output base outside the user root: %v", err)
	}
	for name, m := range map[string]Mirror{
		"relative":        {Workspace: "ws", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"unclean":         {Workspace: "/w/../etc", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"root":            {Workspace: "/", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"system dir":      {Workspace: "/usr/src/ws", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"etc":             {Workspace: "/w", OutputUserRoot: "/etc/o", OutputBase: "/etc/o/x"},
		"tmp itself":      {Workspace: "/tmp", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"proc":            {Workspace: "/w", OutputUserRoot: "/o", OutputBase: "/proc/1/root"},
		"ob in ws":        {Workspace: "/w", OutputUserRoot: "/o", OutputBase: "/w/ob"},
		"ws in ob":        {Workspace: "/o/x/w", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"user root in ws": {Workspace: "/w", OutputUserRoot: "/w/o", OutputBase: "/w/o/x"},
		"ob is user root": {Workspace: "/w", OutputUserRoot: "/o", OutputBase: "/o"},
		"newline":         {Workspace: "/w\n", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"reserved":        {Workspace: "/srv/storage/x", OutputUserRoot: "/o", OutputBase: "/o/x"},
		"user root in ob": {Workspace: "/w", OutputUserRoot: "/o/x/y", OutputBase: "/o/x"},
	} {
		if err := m.Validate("/srv/storage"); err == nil {
			t.Errorf("%s: %+v accepted", name, m)
		}
	}
}

func TestMirrorToStorage(t *testing.T) {
	m := Mirror{Workspace: "/home/a/ws", OutputUserRoot: "/home/a/out", OutputBase: "/home/a/out/abc"}
	d := SessionDirs{Base: "/s/acme/a/h", Workspace: "/s/acme/a/h/ws", OutputUserRoot: "/s/acme/a/h/out", OutputBase: "/s/acme/a/h/out/abc"}
	for in, want := range map[string]string{
		"/home/a/ws/BUILD":                 "ws/BUILD",
		"/home/a/out/abc/execroot/m/bin/x": "out/abc/execroot/m/bin/x",
		"/home/a/out/abc/../../ws/x":       "ws/x",
		"/home/a/out/other/x":              "",
		"/etc/passwd":                      "",
		"relative":                         "",
		"/home/a/wsx":                      "",
	} {
		got, ok := m.ToStorage(d, in)
		if got != want || ok != (want != "") {
			t.Errorf("ToStorage(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestServerCommand(t *testing.T) {
	b := Bazel{InstallBase: "/usr/share/bazel", InstallMD5: "abc", JavaHome: "/usr/lib/jvm/java-17", JVMFlags: []string{"-Xmx8g"}}
	m := Mirror{Workspace: "/home/a/ws", OutputUserRoot: "/home/a/out", OutputBase: "/home/a/out/x"}
	cmd := b.ServerCommand(m, []string{"--nowatchfs"})
	want := []string{"--output_base=/home/a/out/x", "--workspace_directory=/home/a/ws", "--install_md5=abc",
		"--max_idle_secs=0", "--default_system_javabase=/usr/lib/jvm/java-17", "-Xmx8g", "--nowatchfs"}
	for _, w := range want {
		if !slices.Contains(cmd, w) {
			t.Errorf("server command lacks %q: %q", w, cmd)
		}
	}
	jar := slices.Index(cmd, "-jar")
	if jar < 0 || cmd[jar+1] != "/usr/share/bazel/A-server.jar" || slices.Index(cmd, "-Xmx8g") > jar || slices.Index(cmd, "--nowatchfs") < jar {
		t.Errorf("JVM flags must come before -jar and server flags after: %q", cmd)
	}
	if diff := cmp.Diff([]string{"/bin/sh", "-c"}, cmd[:2]); diff != "" {
		t.Errorf("the pid file writer is missing (-want +got):\n%s", diff)
	}
}

// TestChownTreeStaysInside checks that giving a tree to a new uid does not
// follow a symlink planted in it (root only).
func TestChownTreeStaysInside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	tmp := t.TempDir()
	tree := filepath.Join(tmp, "tree")
	victim := filepath.Join(tmp, "victim")
	os.MkdirAll(filepath.Join(tree, "sub"), 0o755)
	os.WriteFile(victim, nil, 0o600)
	os.Symlink(victim, filepath.Join(tree, "sub", "link"))
	os.Lchown(tree, 1234, 1234)
	if err := chownTree(tree, 61234, 61234); err != nil {
		t.Fatal(err)
	}
	for p, uid := range map[string]int{tree: 61234, filepath.Join(tree, "sub", "link"): 61234, victim: 0} {
		st, err := os.Lstat(p)
		if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
			t.Errorf("%s owned by %v, want %d", p, st.Sys().(*syscall.Stat_t).Uid, uid)
		}
	}
}
