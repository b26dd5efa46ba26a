package srcsync

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// racyWindow: a file modified this recently before it was hashed may change
// again within the same mtime tick, so its cached digest is not trusted.
const racyWindow = 2 * time.Second

// statKey is what must be unchanged for a cached digest to be reused.
type statKey struct {
	Size, Mtime, Ctime int64
	Ino                uint64
	Mode               uint32
}

type cacheEntry struct {
	Key   statKey
	Entry Entry
	Racy  bool
}

// ScanStats describes one scan.
type ScanStats struct {
	Entries     int
	Hashed      int
	HashedBytes int64
	// Unreadable lists paths that were skipped because they could not be
	// read (at most 20).
	Unreadable []string
	Duration   time.Duration
}

// Scanner walks a workspace into a Manifest, reusing digests of files whose
// stat data did not change since the previous scan. It is not safe for
// concurrent use.
type Scanner struct {
	root    string
	extra   []string
	cache   map[string]cacheEntry
	now     func() time.Time
	workers int
}

// ScannerOption configures a Scanner.
type ScannerOption func(*Scanner)

// WithExclude adds workspace-relative directories never to sync, as if they
// were in .bazelignore.
func WithExclude(dirs ...string) ScannerOption {
	return func(s *Scanner) { s.extra = append(s.extra, dirs...) }
}

// WithHashWorkers sets how many files are hashed at once (default GOMAXPROCS).
func WithHashWorkers(n int) ScannerOption { return func(s *Scanner) { s.workers = max(n, 1) } }

// NewScanner returns a scanner of the tree at root.
func NewScanner(root string, opts ...ScannerOption) *Scanner {
	s := &Scanner{root: root, cache: map[string]cacheEntry{}, now: time.Now, workers: runtime.GOMAXPROCS(0)}
	for _, o := range opts {
		o(s)
	}
	return s
}

type hashJob struct {
	rel string
	key statKey
	abs string
}

// Scan walks the tree. Directories in .bazelignore (and WithExclude),
// bazel-* symlinks at the root and special files are left out. Directories
// are read in parallel and files are stat'ed relative to their directory.
func (s *Scanner) Scan(ctx context.Context) (Manifest, ScanStats, error) {
	return s.scan(ctx, nil, nil)
}

// Rescan updates prev, the result of an earlier scan, by reading again
// only dirs (slash-separated, "" for the root): their entries are
// replaced, entries gone from them are removed with everything below, and
// new subdirectories are walked. Use it when something (inotify) says
// nothing else changed.
func (s *Scanner) Rescan(ctx context.Context, prev Manifest, dirs []string) (Manifest, ScanStats, error) {
	return s.scan(ctx, prev, dirs)
}

func (s *Scanner) scan(ctx context.Context, prev Manifest, dirs []string) (Manifest, ScanStats, error) {
	start := s.now()
	var stats ScanStats
	ignoreContent, err := os.ReadFile(filepath.Join(s.root, ".bazelignore"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, stats, fmt.Errorf("scan %s: %w", s.root, err)
	}
	ig := ParseIgnore(ignoreContent, s.extra...)

	var (
		mu   sync.Mutex
		m    Manifest
		next map[string]cacheEntry
		jobs []hashJob
	)
	partial := prev != nil
	if partial {
		m = maps.Clone(prev)
		next = maps.Clone(s.cache)
	} else {
		m = make(Manifest, len(s.cache)+len(s.cache)/8)
		next = make(map[string]cacheEntry, len(s.cache))
	}
	// drop removes p and everything below it (partial scans only).
	drop := func(p string) {
		for q := range m {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(m, q)
				delete(next, q)
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.workers)
	// visit reads dir; with walk it descends into every subdirectory,
	// otherwise only into the new ones.
	var visit func(dir string, walk bool) error
	visit = func(dir string, walk bool) error {
		if err := gctx.Err(); err != nil {
			return err
		}
		found, _, err := s.readDir(dir, ig)
		if err != nil {
			if dir == "" {
				return fmt.Errorf("scan %s: %w", s.root, err)
			}
			mu.Lock()
			if partial && errors.Is(err, fs.ErrNotExist) {
				drop(dir)
			} else {
				stats.unreadable(dir)
			}
			mu.Unlock()
			return nil
		}
		var descend []string
		mu.Lock()
		if !walk {
			present := make(map[string]bool, len(found))
			for _, f := range found {
				present[f.rel] = true
			}
			for q := range m {
				if path.Dir(q) == dir || dir == "" && !strings.Contains(q, "/") {
					if !present[q] {
						drop(q)
					}
				}
			}
		}
		for _, f := range found {
			old, had := m[f.rel]
			if partial && had && old.Kind == Dir && f.entry.Kind != Dir {
				drop(f.rel)
			}
			switch {
			case f.bad:
				stats.unreadable(f.rel)
			case f.entry.Kind == Dir:
				if walk || !had || old.Kind != Dir {
					if partial && had && old.Kind != Dir {
						delete(m, f.rel)
						delete(next, f.rel)
					}
					descend = append(descend, f.rel)
				}
				m[f.rel] = f.entry
			case f.entry.Kind != Regular:
				m[f.rel] = f.entry
				delete(next, f.rel)
			default:
				if c, ok := s.cache[f.rel]; ok && c.Key == f.key && !c.Racy {
					m[f.rel] = c.Entry
					next[f.rel] = c
				} else {
					delete(m, f.rel)
					jobs = append(jobs, hashJob{rel: f.rel, key: f.key, abs: filepath.Join(s.root, filepath.FromSlash(f.rel))})
				}
			}
		}
		mu.Unlock()
		for _, sub := range descend {
			if !g.TryGo(func() error { return visit(sub, true) }) {
				if err := visit(sub, true); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if partial {
		slices.Sort(dirs)
		dirs = slices.Compact(dirs)
		g.Go(func() error {
			for _, d := range dirs {
				mu.Lock()
				e, known := m[d]
				mu.Unlock()
				if d != "" && (!known || e.Kind != Dir) {
					continue // gone, or below a directory already replaced
				}
				if err := visit(d, false); err != nil {
					return err
				}
			}
			return nil
		})
	} else {
		g.Go(func() error { return visit("", true) })
	}
	if err := g.Wait(); err != nil {
		return nil, stats, err
	}

	type hashed struct {
		entry Entry
		ok    bool
	}
	results := make([]hashed, len(jobs))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(s.workers)
	for i, j := range jobs {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			e, err := hashFile(j.abs, j.key)
			if err != nil {
				return nil // vanished or unreadable: reported below
			}
			results[i] = hashed{entry: e, ok: true}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, stats, err
	}
	now := s.now()
	for i, j := range jobs {
		if !results[i].ok {
			delete(next, j.rel)
			if _, err := os.Lstat(j.abs); err == nil {
				stats.unreadable(j.rel)
			}
			continue
		}
		e := results[i].entry
		m[j.rel] = e
		stats.Hashed++
		stats.HashedBytes += e.Size
		next[j.rel] = cacheEntry{Key: j.key, Entry: e, Racy: now.Sub(time.Unix(0, j.key.Mtime)) < racyWindow}
	}
	s.cache = next
	stats.Entries = len(m)
	stats.Duration = s.now().Sub(start)
	return m, stats, nil
}

type found struct {
	rel   string
	entry Entry   // Dir or Symlink; Kind Regular for files (to hash or reuse)
	key   statKey // files
	bad   bool    // unreadable
}

// readDir lists one directory, stat'ing files and reading symlinks
// relative to the directory's descriptor.
func (s *Scanner) readDir(dir string, ig Ignore) (out []found, subdirs []string, err error) {
	f, err := os.Open(filepath.Join(s.root, filepath.FromSlash(dir)))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, nil, err
	}
	fd := int(f.Fd())
	for _, de := range ents {
		rel := de.Name()
		if dir != "" {
			rel = dir + "/" + rel
		}
		t := de.Type()
		if ig.Skips(rel) || IsConvenienceSymlink(rel, t&fs.ModeSymlink != 0) || ValidatePath(rel) != nil {
			continue
		}
		switch {
		case t.IsDir():
			out = append(out, found{rel: rel, entry: Entry{Kind: Dir}})
			subdirs = append(subdirs, rel)
		case t&fs.ModeSymlink != 0:
			buf := make([]byte, maxTargetLen+1)
			n, err := unix.Readlinkat(fd, de.Name(), buf)
			if err != nil || n == 0 || n > maxTargetLen {
				out = append(out, found{rel: rel, bad: true})
				continue
			}
			out = append(out, found{rel: rel, entry: Entry{Kind: Symlink, Target: string(buf[:n])}})
		case t.IsRegular():
			var st unix.Stat_t
			if err := unix.Fstatat(fd, de.Name(), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if err != unix.ENOENT {
					out = append(out, found{rel: rel, bad: true})
				}
				continue
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				continue
			}
			out = append(out, found{rel: rel, entry: Entry{Kind: Regular}, key: statKey{
				Size:  st.Size,
				Mtime: st.Mtim.Nano(),
				Ctime: st.Ctim.Nano(),
				Ino:   st.Ino,
				Mode:  st.Mode,
			}})
		}
	}
	return out, subdirs, nil
}

func (st *ScanStats) unreadable(p string) {
	if len(st.Unreadable) < 20 {
		st.Unreadable = append(st.Unreadable, p)
	}
}

// hashFile hashes a regular file; the result is refused when the file
// changed size while it was read.
func hashFile(abs string, key statKey) (Entry, error) {
	f, err := os.Open(abs)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Entry{}, err
	}
	if n != key.Size {
		return Entry{}, fmt.Errorf("%s changed while hashed", abs)
	}
	e := Entry{Kind: Regular, Size: n, Exec: key.Mode&0o111 != 0}
	h.Sum(e.Digest[:0])
	return e, nil
}
