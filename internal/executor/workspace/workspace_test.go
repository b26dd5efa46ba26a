package workspace

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDirName(t *testing.T) {
	tests := []struct {
		jobID, want string
	}{
		{"42", "job-42"},
		{"org/repo#7", "job-org_repo_7"},
		{"../../etc", "job-.._.._etc"},
		{"", "job-"},
		{"é", "job-_"},
		{strings.Repeat("a", 200), "job-" + strings.Repeat("a", maxNameLen-len("job-"))},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, dirName(tt.jobID)); diff != "" {
			t.Errorf("dirName(%q) (-want +got):\n%s", tt.jobID, diff)
		}
	}
}

func TestCreate(t *testing.T) {
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		uid, gid = 123456, 123457
	}
	root := filepath.Join(t.TempDir(), "work")
	dir, err := Create(root, "org/repo#1", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != root || !strings.HasPrefix(filepath.Base(dir), "job-org_repo_1-") {
		t.Errorf("workspace %s, want job-org_repo_1-* under %s", dir, root)
	}
	assertOwner(t, dir, uid, gid, 0o700|os.ModeDir)
	assertOwner(t, root, os.Getuid(), os.Getgid(), 0o711|os.ModeDir)

	other, err := Create(root, "org/repo#1", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	if other == dir {
		t.Errorf("two workspaces of one job share %s", dir)
	}
	if _, err := Create("relative", "x", uid, gid); err == nil {
		t.Error("Create accepted a relative root")
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(ws, "a", "b"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "a", "b", "f"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What a job may leave: a link out of its workspace, directories
	// closed to their owner.
	if err := os.Symlink(outside, filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(ws, "a", "b"), filepath.Join(ws, "a")} {
		if err := os.Chmod(d, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := Remove(ws); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ws); !os.IsNotExist(err) {
		t.Errorf("workspace still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("Remove followed a link out of the workspace: %v", err)
	}
	if err := Remove(ws); err != nil {
		t.Errorf("removing a missing workspace: %v", err)
	}
}

// assertOwner checks a path's owner and mode.
func assertOwner(t *testing.T, path string, uid, gid int, mode os.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	got := [3]int{int(st.Uid), int(st.Gid), int(info.Mode())}
	want := [3]int{uid, gid, int(mode)}
	if got != want {
		t.Errorf("%s: owner %d:%d mode %v, want %d:%d mode %v", path, st.Uid, st.Gid, info.Mode(), uid, gid, mode)
	}
}
