package bwrap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// jobStorage is a job's writable directories on the host: its workspace,
// and with a disk limit its /tmp, both on its slot's filesystem.
type jobStorage struct {
	dir       string // removed when the job ends
	workspace string // bound at /workspace
	tmp       string // bound at /tmp; empty: a tmpfs
	disk      *slotDisk
	baseline  int64  // bytes the disk used before the job
	docker    string // the job's Docker daemon's storage; removed with dir
}

// dockerDir makes the directory of the job's Docker daemon's images and
// containers: on the slot's filesystem beside the workspace when the job
// has a disk limit (the images count against it), else in the work root.
func (s *jobStorage) dockerDir(root, jobID string, uid, gid int) (string, error) {
	if s.disk != nil {
		dir := filepath.Join(s.dir, "docker")
		if err := mkdirOwned(dir, 0o700, uid, gid); err != nil {
			return "", fmt.Errorf("create the docker directory: %w", err)
		}
		return dir, nil
	}
	dir, err := workspace.Create(root, jobID+"-docker", uid, gid)
	if err != nil {
		return "", err
	}
	s.docker = dir
	return dir, nil
}

// newJobStorage makes the directories of a job running as uid:gid: in the
// work root, or on the slot's filesystem when the job has a disk limit.
func (e *Executor) newJobStorage(jobID string, slot int, diskLimit int64, uid, gid int) (*jobStorage, error) {
	if diskLimit == 0 {
		ws, err := workspace.Create(e.opts.WorkRoot, jobID, uid, gid)
		if err != nil {
			return nil, err
		}
		return &jobStorage{dir: ws, workspace: ws}, nil
	}
	disk, err := e.disks.get(slot, diskLimit)
	if err != nil {
		return nil, err
	}
	used, _, _, err := disk.usage()
	if err != nil {
		return nil, err
	}
	// <slot fs>/job-<id>-<random>/{workspace,tmp}: what /proc/self/mountinfo
	// shows of them in the sandbox is that path, relative to the slot's
	// filesystem, and nothing of the host's layout.
	dir, err := workspace.Create(disk.mnt, jobID, 0, 0)
	if err != nil {
		return nil, err
	}
	st := &jobStorage{
		dir:       dir,
		workspace: filepath.Join(dir, "workspace"),
		tmp:       filepath.Join(dir, "tmp"),
		disk:      disk,
		baseline:  used,
	}
	err = errors.Join(
		os.Chmod(dir, 0o711),
		mkdirOwned(st.workspace, 0o700, uid, gid),
		mkdirOwned(st.tmp, 0o1777, uid, gid),
	)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create job directories: %w", err), st.remove())
	}
	return st, nil
}

func mkdirOwned(dir string, mode os.FileMode, uid, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// remove deletes the job's directories; on a slot's filesystem their
// blocks go back to the host (discard).
func (s *jobStorage) remove() error {
	var err error
	if s.docker != "" {
		err = workspace.Remove(s.docker)
	}
	return errors.Join(err, workspace.Remove(s.dir))
}

// overDisk reports whether the job stores more than limit bytes, or has
// filled its filesystem (its blocks or its inodes).
func (s *jobStorage) overDisk(limit int64) (bool, string, error) {
	if s.disk == nil {
		return false, "", nil
	}
	used, avail, inodes, err := s.disk.usage()
	switch {
	case err != nil:
		return false, "", err
	case inodes == 0:
		return true, "no inode left", nil
	case used-s.baseline > limit || avail < diskFullAvail:
		return true, "", nil
	}
	return false, "", nil
}
