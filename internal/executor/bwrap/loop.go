package bwrap

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// loopBlockSize is the logical block size of the slots' loop devices: the
// filesystems' block size, which lets the device write to its image with
// direct I/O (no second copy of every block in the host's page cache).
const loopBlockSize = 4096

// attachLoop binds a free loop device to the image file and returns the
// device, open. The device detaches itself once nothing holds it (it is
// set to autoclear): once the caller has closed it and the filesystem on
// it is unmounted, or at once if it is closed unmounted.
func attachLoop(image *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("attach loop device: %w", err)
	}
	defer ctl.Close()
	for range 64 { // another process may take the free device first
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("attach loop device: get a free one: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("attach loop device: %w", err)
		}
		err = configureLoop(int(dev.Fd()), int(image.Fd()))
		if err == nil {
			return dev, nil
		}
		_ = dev.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach loop device %s: %w", dev.Name(), err)
		}
	}
	return nil, errors.New("attach loop device: every free device was taken first")
}

// configureLoop binds the loop device dev to the file fd: in one call
// (LOOP_CONFIGURE, Linux ≥ 5.8), or in two on older kernels.
func configureLoop(dev, fd int) error {
	cfg := unix.LoopConfig{
		Fd:   uint32(fd),
		Size: loopBlockSize,
		Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO},
	}
	err := unix.IoctlLoopConfigure(dev, &cfg)
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return err
	}
	if err := unix.IoctlSetInt(dev, unix.LOOP_SET_FD, fd); err != nil {
		return err
	}
	if err := unix.IoctlLoopSetStatus64(dev, &unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}); err != nil {
		_ = unix.IoctlSetInt(dev, unix.LOOP_CLR_FD, 0)
		return err
	}
	return nil
}
