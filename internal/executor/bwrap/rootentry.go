package bwrap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// rootNames are the top-level entries besides /usr that executables and
// the dynamic loader reach for. On a merged-usr system (Debian 12) they are
// symbolic links into /usr; elsewhere they are directories.
var rootNames = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// rootEntry is one of them as found on the host.
type rootEntry struct {
	path string // absolute path inside the sandbox, e.g. /bin
	link string // symbolic link target ("usr/bin"); empty for a directory bound read-only
}

// hostRootEntries inspects hostRoot ("/" outside tests) for rootNames.
// Missing entries are left out; anything other than a directory or a
// symbolic link is an error.
func hostRootEntries(hostRoot string) ([]rootEntry, error) {
	var out []rootEntry
	for _, name := range rootNames {
		p := filepath.Join(hostRoot, name)
		info, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return nil, fmt.Errorf("inspect host root: %w", err)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, fmt.Errorf("inspect host root: %w", err)
			}
			out = append(out, rootEntry{path: "/" + name, link: target})
		case info.IsDir():
			out = append(out, rootEntry{path: "/" + name})
		default:
			return nil, fmt.Errorf("inspect host root: %s is neither a directory nor a symbolic link", p)
		}
	}
	return out, nil
}
