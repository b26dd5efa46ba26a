// Package workspace creates, clones and removes the host directories that
// executors bind into sandboxes: one fresh workspace per job, and cheap
// per-job copies of shared trees such as a GitHub Actions runner directory.
//
// The helpers only touch the host filesystem; they start no process. Every
// directory they create must be reachable by the sandbox's uid, so the
// parents of a work root must be traversable (o+x) by that uid.
package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// rootMode is the mode of a work root this package creates: others may
// traverse it (sandbox uids must reach their own workspace) but not list it.
const rootMode = 0o711

// maxNameLen bounds the job-derived part of a workspace's directory name.
const maxNameLen = 64

// Create makes a fresh, empty directory for one job under root and returns
// its path. The directory is named after jobID (sanitised, with a random
// suffix so two runs of one job never share it), has mode 0700 and is owned
// by uid:gid. root is created with mode 0711 if it does not exist.
func Create(root, jobID string, uid, gid int) (string, error) {
	if !filepath.IsAbs(root) {
		return "", fmt.Errorf("work root %q is not an absolute path", root)
	}
	if err := os.MkdirAll(root, rootMode); err != nil {
		return "", fmt.Errorf("create work root: %w", err)
	}
	dir, err := os.MkdirTemp(root, dirName(jobID)+"-")
	if err != nil {
		return "", fmt.Errorf("create workspace: %w", err)
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return "", errors.Join(fmt.Errorf("chown workspace to %d:%d: %w", uid, gid, err), os.Remove(dir))
	}
	return dir, nil
}

// dirName turns a job id into a safe directory name prefix: letters,
// digits, '-', '_' and '.' are kept, anything else becomes '_'.
func dirName(jobID string) string {
	var b strings.Builder
	b.WriteString("job-")
	for _, r := range jobID {
		if b.Len() >= maxNameLen {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Remove deletes dir and everything in it. A sandbox may have left
// directories without write or search permission for their owner; Remove
// restores owner permissions on them and tries again. Symbolic links are
// removed, never followed.
func Remove(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	// Make every directory searchable and writable by its owner, then retry.
	// WalkDir calls fn on a directory before reading it, so the chmod comes
	// in time for the walk to descend.
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, _ error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove workspace %s: %w", dir, err)
	}
	return nil
}
