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

// CloneTree makes a cheap per-job copy of the directory tree src at dst, for
// programs such as the GitHub Actions runner that write into their own
// directory. dst must not exist; its parent must.
//
//   - Directories are created fresh, owned by uid:gid with src's permission
//     bits plus u+rwx, so the job can create, rename and delete entries.
//   - Regular files are hard-linked when that is safe and possible: the link
//     keeps its original owner and mode, so a job running as uid:gid cannot
//     change the shared original in place (it may still replace the name).
//     A file the job could write (owned by uid, or group- or world-writable
//     for it), a file on another filesystem, and a file the caller may not
//     link are copied instead; copies are private to the clone, owned by
//     uid:gid, with set-id bits cleared.
//   - Symbolic links are recreated with the same target, owned by uid:gid.
//   - Named pipes are recreated; sockets are skipped; devices are an error.
//
// Hard links share the inode with src, so a privileged process writing to a
// file in dst changes src: only the job (as uid:gid) is kept out.
func CloneTree(src, dst string, uid, gid int) error {
	info, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("clone tree: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("clone tree: %s is not a directory", src)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("clone tree: destination %s already exists", dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clone tree: %w", err)
	}
	c := cloner{src: src, dst: dst, uid: uid, gid: gid}
	if err := filepath.WalkDir(src, c.visit); err != nil {
		return fmt.Errorf("clone %s to %s: %w", src, dst, err)
	}
	return nil
}

// cloner carries CloneTree's parameters through the walk.
type cloner struct {
	src, dst string
	uid, gid int
}

func (c cloner) visit(path string, d fs.DirEntry, walkErr error) error {
	if walkErr != nil {
		return walkErr
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
		return c.dir(target, mode)
	case mode.IsRegular():
		return c.file(path, target, info)
	case mode&fs.ModeSymlink != 0:
		return c.symlink(path, target)
	case mode&fs.ModeNamedPipe != 0:
		if err := syscall.Mkfifo(target, uint32(mode.Perm())); err != nil {
			return fmt.Errorf("mkfifo %s: %w", target, err)
		}
		return os.Lchown(target, c.uid, c.gid)
	case mode&fs.ModeSocket != 0:
		return nil // a socket is only meaningful to the process that bound it
	default:
		return fmt.Errorf("%s: unsupported file type %s", path, mode.Type())
	}
}

func (c cloner) dir(target string, mode fs.FileMode) error {
	perm := mode.Perm() | 0o700
	if err := os.Mkdir(target, perm); err != nil {
		return err
	}
	if err := os.Lchown(target, c.uid, c.gid); err != nil {
		return err
	}
	return os.Chmod(target, perm) // Mkdir's mode went through the umask
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
	if !writableBy(info, c.uid, c.gid) {
		err := os.Link(path, target)
		if err == nil {
			return nil
		}
		// EXDEV: another filesystem; EPERM: fs.protected_hardlinks refuses a
		// caller who does not own the file; EMLINK: too many links.
		if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EMLINK) {
			return err
		}
	}
	return c.copy(path, target, info.Mode().Perm())
}

// copy makes a private copy of a regular file, owned by the clone's owner.
func (c cloner) copy(path, target string, perm fs.FileMode) (err error) {
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
		return fmt.Errorf("copy %s: %w", path, err)
	}
	if err := out.Chown(c.uid, c.gid); err != nil {
		return err
	}
	return out.Chmod(perm) // set-id bits are not in Perm
}

// writableBy reports whether a process running as uid:gid, with no
// supplementary groups and no capabilities, could modify the file in place
// (the owner can always chmod it writable). ACLs are not considered.
func writableBy(info fs.FileInfo, uid, gid int) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || uid == 0 {
		return true
	}
	perm := info.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return true
	case int(st.Gid) == gid:
		return perm&0o020 != 0 // the group class applies, not "other"
	default:
		return perm&0o002 != 0
	}
}
