package bwrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// rootSystemDirs are the top-level directories that hold programs and
// libraries besides /usr. On a merged-usr system (Debian 12) they are
// symbolic links into /usr; elsewhere they are real directories.
var rootSystemDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// hostLayout is how the host's top-level system directories reach /usr, so
// the sandbox can reproduce it.
type hostLayout struct {
	// Symlinks are recreated as they are, e.g. /bin -> usr/bin.
	Symlinks []symlink
	// Dirs are real directories, bound read-only.
	Dirs []string
}

// symlink is a symbolic link at Path pointing at Target.
type symlink struct {
	Target, Path string
}

// probeHost reads the layout of the system directories under root ("/" on
// a real host).
func probeHost(root string) (hostLayout, error) {
	var l hostLayout
	for _, name := range rootSystemDirs {
		p := filepath.Join(root, name)
		info, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return hostLayout{}, fmt.Errorf("probe host layout: %w", err)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return hostLayout{}, fmt.Errorf("probe host layout: %w", err)
			}
			l.Symlinks = append(l.Symlinks, symlink{Target: target, Path: "/" + name})
		case info.IsDir():
			l.Dirs = append(l.Dirs, "/"+name)
		}
	}
	return l, nil
}
