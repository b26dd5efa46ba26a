package outputs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

// MaxEntries bounds how many entries one Stat call describes.
const MaxEntries = 200_000

// ErrOutside means a path is not under the session's workspace or output base.
var ErrOutside = errors.New("path is outside the session")

// Lister describes and opens files of a session's storage by the
// developer's absolute paths. It runs on the agent.
type Lister struct {
	// Root is the session's storage; every access goes through it, so
	// symlinks the sandboxed server planted cannot lead outside.
	Root *os.Root
	// ToStorage maps a developer path to a path relative to Root.
	ToStorage func(devPath string) (string, bool)
	// Follow says whether a symlink target (a developer path) is described
	// too: true for targets under the output base.
	Follow func(devPath string) bool
	Cache  *DigestCache
}

// Stat describes paths: directories recursively, symlinks with their
// targets (and, when Follow allows, what they point to). Paths that do not
// exist are left out.
func (l *Lister) Stat(ctx context.Context, paths []string) ([]*tunnelpb.FileEntry, error) {
	var out []*tunnelpb.FileEntry
	seen := map[string]bool{}
	queue := append([]string(nil), paths...)
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := queue[0]
		queue = queue[1:]
		if !path.IsAbs(p) || path.Clean(p) != p || seen[p] {
			continue
		}
		seen[p] = true
		if len(out) >= MaxEntries {
			return nil, fmt.Errorf("more than %d entries", MaxEntries)
		}
		rel, ok := l.ToStorage(p)
		if !ok {
			continue
		}
		st, err := l.Root.Lstat(rel)
		if err != nil {
			continue // gone, or behind a link that leaves the session
		}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := l.Root.Readlink(rel)
			if err != nil {
				continue
			}
			out = append(out, &tunnelpb.FileEntry{Path: p, Kind: tunnelpb.FileKind_FILE_KIND_SYMLINK, Target: target})
			next := target
			if !path.IsAbs(next) {
				next = path.Join(path.Dir(p), next)
			}
			if l.Follow != nil && l.Follow(next) {
				queue = append(queue, path.Clean(next))
			}
		case st.IsDir():
			out = append(out, &tunnelpb.FileEntry{Path: p, Kind: tunnelpb.FileKind_FILE_KIND_DIRECTORY})
			d, err := l.Root.Open(rel)
			if err != nil {
				continue
			}
			names, err := d.Readdirnames(-1)
			d.Close()
			if err != nil {
				continue
			}
			for _, n := range names {
				queue = append(queue, path.Join(p, n))
			}
		case st.Mode().IsRegular():
			f, err := l.Open(p)
			if err != nil {
				continue
			}
			digest, size, err := l.Cache.Digest(p, f)
			mode := st.Mode()
			f.Close()
			if err != nil {
				continue
			}
			out = append(out, &tunnelpb.FileEntry{Path: p, Kind: tunnelpb.FileKind_FILE_KIND_REGULAR, Digest: digest[:], Size: size, Executable: mode&0o111 != 0})
		}
	}
	return out, nil
}

// Open opens a regular file by developer path.
func (l *Lister) Open(devPath string) (*os.File, error) {
	rel, ok := l.ToStorage(devPath)
	if !ok {
		return nil, fmt.Errorf("%s: %w", devPath, ErrOutside)
	}
	f, err := l.Root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", devPath)
	}
	return f, nil
}

// WorkspaceLinks returns the bazel-* symlinks at the root of the
// workspace copy (relative path wsRel in Root), by base name.
func (l *Lister) WorkspaceLinks(wsRel string) []*tunnelpb.FileEntry {
	d, err := l.Root.Open(wsRel)
	if err != nil {
		return nil
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil
	}
	var out []*tunnelpb.FileEntry
	for _, n := range names {
		if !strings.HasPrefix(n, "bazel-") {
			continue
		}
		target, err := l.Root.Readlink(path.Join(wsRel, n))
		if err != nil {
			continue
		}
		out = append(out, &tunnelpb.FileEntry{Path: n, Kind: tunnelpb.FileKind_FILE_KIND_SYMLINK, Target: target})
	}
	return out
}
