package bwrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Disk limits. Each job slot that runs a job with a disk limit gets a
// filesystem of its own: a sparse ext4 image in the work root
// (slot-<n>.img), attached to a loop device and mounted at slot-<n> for
// the Executor's life. A job's workspace and /tmp are directories on its
// slot's filesystem, removed when it ends. The filesystem is the hard
// bound (a write past its size fails with ENOSPC, whatever the job does);
// a watcher stops the job as soon as it stores more than its limit.
//
// The image is made once per slot (not per job: mkfs and mount cost tens of
// milliseconds) and is a little larger than the limit, for the
// filesystem's own metadata and so that going past the limit is seen
// before the filesystem is full. It has no journal (a crashed agent's
// images are thrown away, never repaired) and no reserved blocks, and is
// mounted with discard: blocks a job frees go back to the host's
// filesystem at once, so an idle slot costs next to no host disk. A job
// with a larger limit than its slot's filesystem gets a new one.

// diskSlack is the room an image has past its limit, besides its metadata.
const diskSlack = 64 << 20

// diskFullAvail: a filesystem with less than this available is full.
const diskFullAvail = 1 << 20

// mkfsTimeout bounds the formatting of an image.
const mkfsTimeout = 2 * time.Minute

// slotDisks are the job slots' filesystems of one Executor.
type slotDisks struct {
	root string // the work root

	mu    sync.Mutex
	slots map[int]*slotDisk
}

func newSlotDisks(root string) *slotDisks {
	return &slotDisks{root: root, slots: map[int]*slotDisk{}}
}

// get returns slot's filesystem, made for a limit of at least limit bytes.
// The slot must be idle (no job of it running).
func (d *slotDisks) get(slot int, limit int64) (*slotDisk, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.slots[slot]; s != nil {
		if s.limit >= limit {
			return s, nil
		}
		delete(d.slots, slot)
		if err := s.release(); err != nil {
			return nil, err
		}
	}
	s, err := makeSlotDisk(d.root, slot, limit)
	if err != nil {
		return nil, err
	}
	d.slots[slot] = s
	return s, nil
}

// close unmounts every slot's filesystem and removes its image.
func (d *slotDisks) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for slot, s := range d.slots {
		errs = append(errs, s.release())
		delete(d.slots, slot)
	}
	return errors.Join(errs...)
}

// slotDisk is one slot's mounted filesystem.
type slotDisk struct {
	image string
	mnt   string
	limit int64 // the largest disk limit it holds
}

// imageSize is the size of an image for a disk limit: the limit, the
// slack, and the filesystem's metadata (inode tables take 256 bytes per 16
// KiB, block bitmaps and group descriptors a little more, and ext4 keeps
// up to 2% or 16 MiB of its blocks back).
func imageSize(limit int64) int64 {
	const blk = 4096
	size := limit + diskSlack + limit/50 + 16<<20
	return (size + blk - 1) / blk * blk
}

// makeSlotDisk formats and mounts a fresh filesystem for slot.
func makeSlotDisk(root string, slot int, limit int64) (_ *slotDisk, err error) {
	s := &slotDisk{
		image: filepath.Join(root, fmt.Sprintf("slot-%d.img", slot)),
		mnt:   filepath.Join(root, fmt.Sprintf("slot-%d", slot)),
		limit: limit,
	}
	fail := func(err error) (*slotDisk, error) {
		_ = os.Remove(s.image)
		_ = os.Remove(s.mnt)
		return nil, fmt.Errorf("slot %d's disk: %w", slot, err)
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return fail(err)
	}
	img, err := os.OpenFile(s.image, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fail(err)
	}
	defer img.Close()
	if err := img.Truncate(imageSize(limit)); err != nil {
		return fail(err)
	}
	if err := mkfs(s.image, fmt.Sprintf("nimbus-slot-%d", slot)); err != nil {
		return fail(err)
	}
	dev, err := attachLoop(img)
	if err != nil {
		return fail(err)
	}
	defer dev.Close() // the mount holds the device; autoclear detaches it with the mount
	if err := os.Mkdir(s.mnt, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return fail(err)
	}
	// noinit_itable: the image is sparse, so its inode tables already read
	// as zeros; the kernel need not write them.
	err = unix.Mount(dev.Name(), s.mnt, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "discard,noinit_itable")
	if err != nil {
		return fail(fmt.Errorf("mount %s on %s: %w", dev.Name(), s.mnt, err))
	}
	if err := os.Chmod(s.mnt, 0o711); err != nil {
		return nil, errors.Join(fmt.Errorf("slot %d's disk: %w", slot, err), s.release())
	}
	return s, nil
}

// mkfsPaths are where mkfs.ext4 is looked for, in order, after PATH.
var mkfsPaths = []string{"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}

// mkfs formats the image as ext4 for a throwaway workspace: no journal, no
// reserved blocks, no room to grow, root-owned, and blocks as large as the
// loop device's (mkfs would pick 1 KiB ones for a small image, which the
// kernel refuses to mount on a 4 KiB device).
func mkfs(image, label string) error {
	bin, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		for _, p := range mkfsPaths {
			if _, err := os.Stat(p); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		return errors.New("mkfs.ext4 not found: install e2fsprogs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), mkfsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-q", "-F", "-L", label, "-b", strconv.Itoa(loopBlockSize),
		"-O", "^has_journal,^resize_inode", "-m", "0",
		"-E", "nodiscard,lazy_itable_init=1,root_owner=0:0", image)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", bin, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// usage reads how full the filesystem is: bytes in use, bytes still
// available, and inodes left.
func (s *slotDisk) usage() (used, avail int64, inodes uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.mnt, &st); err != nil {
		return 0, 0, 0, fmt.Errorf("statfs %s: %w", s.mnt, err)
	}
	bs := int64(st.Bsize)
	return int64(st.Blocks-st.Bfree) * bs, int64(st.Bavail) * bs, st.Ffree, nil
}

// release unmounts the filesystem (the loop device then detaches itself)
// and removes the image and the mount point.
func (s *slotDisk) release() error {
	err := unix.Unmount(s.mnt, 0)
	if errors.Is(err, unix.EBUSY) {
		// Something still uses it (a workspace kept open by a process that
		// outlived its job?): detach it now, the kernel frees it later.
		err = unix.Unmount(s.mnt, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", s.mnt, err)
	}
	return errors.Join(removeIfExists(s.mnt), removeIfExists(s.image))
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
