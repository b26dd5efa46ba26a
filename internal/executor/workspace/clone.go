package workspace

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CloneTree makes a per-job copy of the directory tree src at dst, cheaply,
// for a sandbox running as uid:gid. It exists for trees that a job writes
// into but must not change for other jobs, such as a GitHub Actions runner
// directory (bubblewrap has no overlay filesystem).
//
//   - Directories are created fresh, owned by uid:gid, with the source's
//     permissions plus rwx for the owner, so the job can create, rename and
//     delete entries.
//   - Regular files are hard-linked to the source when both are on one
//     filesystem, and keep their original owner and mode: the job can
//     replace them in the clone but cannot write into them, so the shared
//     originals stay intact. A file that uid:gid could write to in place
//     (owned by uid, group-writable by gid or world-writable) is copied
//     instead, as is every file when linking is impossible (another
//     filesystem, or hard-link protection for an unprivileged caller).
//   - Symbolic links are recreated with the same target, owned by uid:gid.
//   - Sockets are skipped; other special files are an error.
//
// dst must not exist; its parent must. On error, dst may be left partly
// written; remove it with Remove.
func CloneTree(src, dst string, uid, gid int) error {
	info, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("clone %s: not a directory", src)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("clone %s: destination %s already exists", src, dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	c := cloner{src: src, dst: dst, uid: uid, gid: gid}
	// The root is followed if it is a symbolic link; nothing below it is.
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	c.src = root
	if err := filepath.WalkDir(root, c.visit); err != nil {
		return fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	return nil
}

type cloner struct {
	src, dst string
	uid, gid int
}

func (c cloner) visit(path string, d fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(c.src, path)
	if err != nil {
		return err
	}
	target := filepath.Join(c.dst, rel)
	info, err := d.Info()
	if err != nil {
		return err
	}
	switch mode := info.Mode(); {
	case mode.IsDir():
		return c.dir(target, mode.Perm())
	case mode&fs.ModeSymlink != 0:
		return c.symlink(path, target)
	case mode.IsRegular():
		return c.file(path, target, info)
	case mode&fs.ModeSocket != 0:
		return nil
	default:
		return fmt.Errorf("%s: unsupported file type %s", path, mode.Type())
	}
}

func (c cloner) dir(target string, perm fs.FileMode) error {
	if err := os.Mkdir(target, 0o700); err != nil {
		return err
	}
	// Mkdir is subject to the umask; set the final mode explicitly.
	if err := os.Chmod(target, perm|0o700); err != nil {
		return err
	}
	return os.Lchown(target, c.uid, c.gid)
}

func (c cloner) symlink(path, target string) error {
	dest, err := os.Readlink(path)
	if err != nil {
		return err
	}
	if err := os.Symlink(dest, target); err != nil {
		return err
	}
	return os.Lchown(target, c.uid, c.gid)
}

func (c cloner) file(path, target string, info fs.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", path)
	}
	if !writableBy(info.Mode(), int(st.Uid), int(st.Gid), c.uid, c.gid) {
		err := os.Link(path, target)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) {
			return err
		}
	}
	return copyFile(path, target, info, st)
}

// writableBy reports whether a caller with uid:gid could open a file with
// this mode and owner for writing.
func writableBy(mode fs.FileMode, ownerUID, ownerGID, uid, gid int) bool {
	switch {
	case uid == ownerUID:
		return mode&0o200 != 0
	case gid == ownerGID:
		return mode&0o020 != 0
	default:
		return mode&0o002 != 0
	}
}

// copyFile copies a regular file with its permissions (without set-id bits)
// and modification time, owned like the source where the caller may do so.
func copyFile(path, target string, info fs.FileInfo, st *syscall.Stat_t) (err error) {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	// An unprivileged caller cannot give files away; its copies stay its own.
	if err := out.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, syscall.EPERM) {
		return err
	}
	if err := out.Chmod(info.Mode().Perm()); err != nil {
		return err
	}
	return os.Chtimes(target, info.ModTime(), info.ModTime())
}
