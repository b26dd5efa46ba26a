package workspace

import (
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// tree is a source tree for clone tests: path → content (files), "/" suffix
// → directory, "->target" → symbolic link.
type tree map[string]string

func writeTree(t *testing.T, root string, tr tree, modes map[string]os.FileMode) {
	t.Helper()
	for name, v := range tr {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(v, "->"):
			if err := os.Symlink(strings.TrimPrefix(v, "->"), p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, m := range modes {
		if err := os.Chmod(filepath.Join(root, name), m); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree reads a tree back in writeTree's notation.
func readTree(t *testing.T, root string) tree {
	t.Helper()
	out := tree{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case d.IsDir():
			out[rel+"/"] = ""
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			out[rel] = "->" + target
			return err
		default:
			b, err := os.ReadFile(path)
			out[rel] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	ia, err := os.Lstat(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := os.Lstat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(ia, ib)
}

func TestCloneTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "runner")
	src2 := tree{
		"run.sh":                 "#!/bin/sh\n",
		"config.sh":              "cfg",
		"bin/":                   "",
		"bin/Runner.Listener":    "bin",
		"externals/node/VERSION": "20",
		"empty/":                 "",
		"shared.log":             "anyone may write me",
		"listener":               "->bin/Runner.Listener",
		"dangling":               "->/nonexistent",
	}
	writeTree(t, src, src2, map[string]os.FileMode{
		"run.sh": 0o755, "shared.log": 0o666, "empty": 0o555, "bin": 0o750,
	})
	// A socket left by an earlier run is not cloned.
	l, err := net.Listen("unix", filepath.Join(src, "listener.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(src, "shared.log"), old, old); err != nil {
		t.Fatal(err)
	}

	uid, gid := testIDs()
	dst := filepath.Join(t.TempDir(), "clone")
	if err := CloneTree(src, dst, uid, gid); err != nil {
		t.Fatal(err)
	}
	want := tree{"externals/": "", "externals/node/": ""}
	maps.Copy(want, src2)
	if diff := cmp.Diff(want, readTree(t, dst)); diff != "" {
		t.Errorf("clone content (-want +got):\n%s", diff)
	}

	// Directories are the job's, writable by it, with the source's other bits.
	for dir, want := range map[string]os.FileMode{".": 0o755, "bin": 0o750, "empty": 0o755, "externals/node": 0o755} {
		p := filepath.Join(dst, dir)
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", dir, info.Mode().Perm(), want)
		}
		if u, g := owner(t, p); u != uid || g != gid {
			t.Errorf("%s: owned by %d:%d, want %d:%d", dir, u, g, uid, gid)
		}
	}
	if u, g := owner(t, filepath.Join(dst, "listener")); u != uid || g != gid {
		t.Errorf("symlink owned by %d:%d, want %d:%d", u, g, uid, gid)
	}

	// Files the job cannot write in place are shared; the others are
	// copies. Only root can clone for another uid, and files the caller
	// owns are writable by that uid, so without root every file is copied.
	root := os.Geteuid() == 0
	for name, wantShared := range map[string]bool{
		"run.sh": root, "config.sh": root, "bin/Runner.Listener": root, "shared.log": false,
	} {
		if got := sameFile(t, filepath.Join(src, name), filepath.Join(dst, name)); got != wantShared {
			t.Errorf("%s: shared with the source = %v, want %v", name, got, wantShared)
		}
	}
	info, err := os.Stat(filepath.Join(dst, "shared.log"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o666 || !info.ModTime().Equal(old) {
		t.Errorf("copied file: mode %04o mtime %v, want 0666 and %v", info.Mode().Perm(), info.ModTime(), old)
	}
	if u, _ := owner(t, filepath.Join(dst, "shared.log")); u != os.Getuid() {
		t.Errorf("copied file owned by %d, want the source's owner %d", u, os.Getuid())
	}
}

func TestCloneTreeErrors(t *testing.T) {
	uid, gid := testIDs()
	src := t.TempDir()
	file := filepath.Join(src, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	exists := t.TempDir()
	tests := []struct {
		name, src, dst, wantErr string
	}{
		{"missing source", filepath.Join(src, "nope"), filepath.Join(t.TempDir(), "d"), "no such file"},
		{"source is a file", file, filepath.Join(t.TempDir(), "d"), "not a directory"},
		{"destination exists", src, exists, "already exists"},
		{"no parent", src, filepath.Join(t.TempDir(), "a", "b"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CloneTree(tt.src, tt.dst, uid, gid)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("CloneTree: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}

	fifoSrc := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifoSrc, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := CloneTree(fifoSrc, filepath.Join(t.TempDir(), "d"), uid, gid)
	if err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Errorf("CloneTree of a fifo: %v, want an unsupported file type error", err)
	}
}

// TestCloneTreeAcrossFilesystems clones from tmpfs (/dev/shm) to the test's
// temporary directory, where hard links are impossible.
func TestCloneTreeAcrossFilesystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "clone-test-")
	if err != nil {
		t.Skipf("no /dev/shm to clone from: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	dst := filepath.Join(t.TempDir(), "clone")
	var a, b syscall.Stat_t
	if err := syscall.Stat(shm, &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Dir(dst), &b); err != nil {
		t.Fatal(err)
	}
	if a.Dev == b.Dev {
		t.Skip("/dev/shm and the temporary directory are one filesystem")
	}
	writeTree(t, shm, tree{"a/b": "content", "c": "more"}, map[string]os.FileMode{"c": 0o755})
	uid, gid := testIDs()
	if err := CloneTree(shm, dst, uid, gid); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tree{"a/": "", "a/b": "content", "c": "more"}, readTree(t, dst)); diff != "" {
		t.Errorf("clone (-want +got):\n%s", diff)
	}
	info, err := os.Stat(filepath.Join(dst, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o755 {
		t.Errorf("copied file mode %04o, want 0755", info.Mode().Perm())
	}
}
