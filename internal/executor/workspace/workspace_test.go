package workspace

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// testIDs returns ids to own test files by: a uid no host user has when
// the test runs as root, else the caller's own (only root gives files away).
func testIDs() (uid, gid int) {
	if os.Geteuid() == 0 {
		return 100900, 100900
	}
	return os.Getuid(), os.Getgid()
}

func owner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

func TestDirName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"job-1", "job-1"},
		{"", "job"},
		{"../../etc", "_._.._etc"},
		{".hidden", "_hidden"},
		{"a b/c\x00d", "a_b_c_d"},
		{"ünï", "_n_"},
		{strings.Repeat("x", 100), strings.Repeat("x", maxNameLen)},
	}
	for _, tt := range tests {
		if got := dirName(tt.in); got != tt.want {
			t.Errorf("dirName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCreate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "work")
	uid, gid := testIDs()
	a, err := Create(root, "job/1", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(root, "job/1", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("two workspaces of one job share %s", a)
	}
	if filepath.Dir(a) != root || !strings.HasPrefix(filepath.Base(a), "job_1-") {
		t.Errorf("workspace %s, want job_1-* under %s", a, root)
	}
	info, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("workspace mode %04o, want 0700", perm)
	}
	if u, g := owner(t, a); u != uid || g != gid {
		t.Errorf("workspace owned by %d:%d, want %d:%d", u, g, uid, gid)
	}
	rootInfo, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	if perm := rootInfo.Mode().Perm(); perm != 0o711 {
		t.Errorf("work root mode %04o, want 0711", perm)
	}
	if _, err := Create("relative", "j", uid, gid); err == nil {
		t.Error("Create with a relative root: no error")
	}
}

func TestRemove(t *testing.T) {
	uid, gid := testIDs()
	ws, err := Create(t.TempDir(), "j", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	// What a job may leave: unreadable and unwritable directories.
	deep := filepath.Join(ws, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "f"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{deep, filepath.Dir(deep)} {
		if err := os.Chmod(d, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(ws, "a"), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ws); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ws); !os.IsNotExist(err) {
		t.Errorf("workspace still there: %v", err)
	}
	if err := Remove(ws); err != nil {
		t.Errorf("Remove of a removed workspace: %v", err)
	}
}

func TestCheckTraversable(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o711); err != nil {
		t.Fatal(err)
	}
	me, mygid := os.Getuid(), os.Getgid()
	other := me + 54321
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := mk("open", 0o711)
	closed := mk("closed", 0o700)
	group := mk("group", 0o710)
	tests := []struct {
		name     string
		dir      string
		uid, gid int
		wantErr  string
	}{
		{"others may search", filepath.Join(open, "not-yet", "work"), other, other, ""},
		{"owner may search", closed, me, mygid, ""},
		{"closed to others", filepath.Join(closed, "work"), other, other, "chmod o+x " + closed},
		{"group may search", group, other, mygid, ""},
		{"group bit does not serve others", group, other, other, "chmod o+x " + group},
		{"owner without x", closed, other, other, "is not traversable by uid"},
		{"relative", "work", other, other, "not an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTraversable(tt.dir, tt.uid, tt.gid)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("CheckTraversable: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("CheckTraversable: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
