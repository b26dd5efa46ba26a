// Package workspace creates, clones and removes the host directories that
// executors bind into sandboxes: one fresh workspace per job, and cheap
// per-job copies of shared trees such as a GitHub Actions runner directory.
//
// These helpers only touch the host filesystem; they start no process.
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

// dirName turns a job id into a safe directory name prefix.
func dirName(jobID string) string {
	var b strings.Builder
	for _, r := range jobID {
		if b.Len() >= maxNameLen {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.' && b.Len() > 0:
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "job"
	}
	return b.String()
}

// Remove deletes a workspace and everything in it, including directories the
// job made read-only or unreadable.
func Remove(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	// An unprivileged agent cannot delete entries of directories the job
	// chmod-ed to 0500 or 0000: give every directory back to its owner and
	// try again. WalkDir visits a directory before reading it, and never
	// follows symbolic links.
	walkErr := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
		if d != nil && d.IsDir() {
			return os.Chmod(path, 0o700)
		}
		return nil
	})
	if walkErr != nil {
		return fmt.Errorf("remove workspace %s: %w", dir, errors.Join(err, walkErr))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove workspace %s: %w", dir, err)
	}
	return nil
}
