package bwrap

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// sweep removes what an earlier Executor on the same work root left:
// filesystems mounted under it (slots' disks), then every entry of it
// (workspaces, images). Its cgroups are swept by newCgroupTree.
func (e *Executor) sweep() error {
	root := e.opts.WorkRoot
	if e.asRoot {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return fmt.Errorf("sweep work root: %w", err)
		}
		mounts, err := parseMountinfo(string(data))
		if err != nil {
			return fmt.Errorf("sweep work root: %w", err)
		}
		var points []string
		for _, m := range mounts {
			if strings.HasPrefix(m.Point, root+"/") {
				points = append(points, m.Point)
			}
		}
		// Deepest first; a mount seen twice (stacked) is unmounted twice.
		slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
		for _, p := range points {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("sweep work root: unmount %s: %w", p, err)
			}
		}
		if len(points) > 0 {
			e.log.Info("unmounted leftovers of an earlier run", "mounts", len(points))
		}
	}
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sweep work root: %w", err)
	}
	for _, ent := range entries {
		if err := workspace.Remove(filepath.Join(root, ent.Name())); err != nil {
			return fmt.Errorf("sweep work root: %w", err)
		}
	}
	if len(entries) > 0 {
		e.log.Info("removed leftovers of an earlier run", "dir", root, "entries", len(entries))
	}
	return nil
}

// shortHash is a short stable name for s.
func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}

// randomHex is n random bytes in hexadecimal.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
