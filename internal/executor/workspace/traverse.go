package workspace

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// CheckTraversable reports whether a process running as uid:gid (with no
// supplementary groups) can reach dir: every existing directory from / down
// to dir must grant it search (x) permission. Sandboxes running as their own
// uid need this to bind their workspace. Path components that do not exist
// yet are not checked.
func CheckTraversable(dir string, uid, gid int) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%q is not an absolute path", dir)
	}
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		switch {
		case os.IsNotExist(err):
		case err != nil:
			return fmt.Errorf("stat %s: %w", p, err)
		default:
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("stat %s: no owner information", p)
			}
			if !searchable(info.Mode(), int(st.Uid), int(st.Gid), uid, gid) {
				return fmt.Errorf("%s (mode %04o, owner %d:%d) is not traversable by uid %d: run `chmod o+x %s`",
					p, info.Mode().Perm(), st.Uid, st.Gid, uid, p)
			}
		}
		if p == "/" {
			return nil
		}
	}
}

// searchable applies the kernel's permission check for search (x) on a
// directory, for a caller without capabilities.
func searchable(mode os.FileMode, ownerUID, ownerGID, uid, gid int) bool {
	switch {
	case uid == ownerUID:
		return mode&0o100 != 0
	case gid == ownerGID:
		return mode&0o010 != 0
	default:
		return mode&0o001 != 0
	}
}
