package workspace

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// cloneIDs are the uid and gid of a clone's owner: another user's when the
// test can chown, else the test's own (when everything is copied).
func cloneIDs() (int, int) {
	if os.Geteuid() == 0 {
		return 123456, 123456
	}
	return os.Getuid(), os.Getgid()
}

func TestCloneTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: files owned by another user than the clone's owner")
	}
	uid, gid := cloneIDs()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	mustMkdir(t, filepath.Join(src, "bin"), 0o755)
	mustMkdir(t, filepath.Join(src, "private"), 0o700)
	mustWrite(t, filepath.Join(src, "run.sh"), "run", 0o755)
	mustWrite(t, filepath.Join(src, "bin", "lib.so"), "lib", 0o644)
	mustWrite(t, filepath.Join(src, "private", "key"), "key", 0o600)
	mustWrite(t, filepath.Join(src, "shared.log"), "log", 0o666)           // world-writable: copied
	mustWrite(t, filepath.Join(src, "group.log"), "glog", 0o664)           // group-writable for gid: copied
	mustWrite(t, filepath.Join(src, "mine"), "mine", 0o444)                // owned by uid: copied
	mustWrite(t, filepath.Join(src, "setuid"), "suid", 0o4777)             // world-writable, set-id: copied without it
	if err := os.Chmod(filepath.Join(src, "setuid"), 0o4777); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "shared.log"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "group.log"), 0o664); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "group.log"), 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(src, "mine"), uid, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bin/lib.so", filepath.Join(src, "rel-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/target", filepath.Join(src, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	dst := filepath.Join(dir, "dst")
	if err := CloneTree(src, dst, uid, gid); err != nil {
		t.Fatal(err)
	}

	// Directories: fresh, owned by the clone's owner, which may write them.
	for _, d := range []struct {
		name string
		perm os.FileMode
	}{{".", 0o755}, {"bin", 0o755}, {"private", 0o700}} {
		assertOwner(t, filepath.Join(dst, d.name), uid, gid, os.ModeDir|d.perm)
		if sameFile(t, filepath.Join(src, d.name), filepath.Join(dst, d.name)) {
			t.Errorf("directory %s is shared with the source", d.name)
		}
	}
	// Files the owner cannot write: hard links, owner and mode untouched.
	for _, name := range []string{"run.sh", "bin/lib.so", "private/key"} {
		if !sameFile(t, filepath.Join(src, name), filepath.Join(dst, name)) {
			t.Errorf("%s was copied, want a hard link", name)
		}
	}
	// Files the owner could write: private copies owned by it, no set-id.
	for _, f := range []struct {
		name, data string
		perm       os.FileMode
	}{{"shared.log", "log", 0o666}, {"group.log", "glog", 0o664}, {"mine", "mine", 0o444}, {"setuid", "suid", 0o777}} {
		p := filepath.Join(dst, f.name)
		if sameFile(t, filepath.Join(src, f.name), p) {
			t.Errorf("%s is a hard link the clone's owner could write through", f.name)
		}
		assertOwner(t, p, uid, gid, f.perm)
		if got, err := os.ReadFile(p); err != nil || string(got) != f.data {
			t.Errorf("copy of %s = %q, %v", f.name, got, err)
		}
	}
	for name, target := range map[string]string{"rel-link": "bin/lib.so", "dangling": "/nonexistent/target"} {
		got, err := os.Readlink(filepath.Join(dst, name))
		if err != nil || got != target {
			t.Errorf("symlink %s -> %q, %v; want %q", name, got, err, target)
		}
		assertOwner(t, filepath.Join(dst, name), uid, gid, os.ModeSymlink|0o777)
	}
	if info, err := os.Lstat(filepath.Join(dst, "fifo")); err != nil || info.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v, %v", info, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "sock")); !os.IsNotExist(err) {
		t.Errorf("socket cloned: %v", err)
	}
}

func TestCloneTreeErrors(t *testing.T) {
	uid, gid := cloneIDs()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	mustMkdir(t, src, 0o755)
	file := filepath.Join(dir, "file")
	mustWrite(t, file, "x", 0o644)
	tests := []struct {
		name, src, dst, want string
	}{
		{"missing source", filepath.Join(dir, "nope"), filepath.Join(dir, "d1"), "no such file"},
		{"source not a directory", file, filepath.Join(dir, "d2"), "not a directory"},
		{"destination exists", src, file, "already exists"},
		{"destination parent missing", src, filepath.Join(dir, "no", "d3"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CloneTree(tt.src, tt.dst, uid, gid)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CloneTree error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	t.Run("device", func(t *testing.T) {
		devSrc := filepath.Join(dir, "devsrc")
		mustMkdir(t, devSrc, 0o755)
		if err := syscall.Mknod(filepath.Join(devSrc, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Skipf("cannot create a device node here: %v", err)
		}
		err := CloneTree(devSrc, filepath.Join(dir, "devdst"), uid, gid)
		if err == nil || !strings.Contains(err.Error(), "unsupported file type") {
			t.Errorf("CloneTree error = %v, want an unsupported file type", err)
		}
	})
}

// TestCloneTreeAcrossFilesystems clones from a tmpfs to the temporary
// directory's filesystem: hard links are impossible, everything is copied.
func TestCloneTreeAcrossFilesystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "nimbus-clone-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	dst := filepath.Join(t.TempDir(), "dst")
	var a, b syscall.Stat_t
	if syscall.Stat(shm, &a) != nil || syscall.Stat(filepath.Dir(dst), &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm and the temporary directory share a filesystem")
	}
	uid, gid := cloneIDs()
	mustMkdir(t, filepath.Join(shm, "sub"), 0o755)
	mustWrite(t, filepath.Join(shm, "sub", "f"), "data", 0o640)
	if err := CloneTree(shm, dst, uid, gid); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dst, "sub", "f")
	if got, err := os.ReadFile(p); err != nil || string(got) != "data" {
		t.Errorf("copied file = %q, %v", got, err)
	}
	assertOwner(t, p, uid, gid, 0o640)
}

func mustMkdir(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(path, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
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
