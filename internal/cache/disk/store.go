package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Store is the disk blob store. Open it, and Close it to stop its
// background work and save its index.
type Store struct {
	root string
	opts Options
	log  *slog.Logger
	gs   *groupSync
	dirf *os.File // the root, for syncfs

	mu        sync.Mutex
	ix        *index
	orgs      []*orgState
	orgByName map[string]uint16
	physical  int64 // bytes on disk, deduplicated
	closed    bool

	rebuilding atomic.Bool
	evictions  atomic.Int64
	refusals   atomic.Int64

	stop context.CancelFunc
	wg   sync.WaitGroup
}

type orgState struct {
	name  string
	dir   string
	lru   lru
	bytes int64
	count int
	quota Quota
	// shards records the xx/ directories known to exist, by kind and byte.
	shards [4][256]bool
}

var _ blobstore.ZstdStore = (*Store)(nil)

// Open opens (creating if needed) the store under root. It returns as soon
// as the index snapshot is loaded; the reconciling walk goes on in the
// background until Close.
func Open(root string, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open disk store: %w", err)
	}
	for _, d := range []string{root, filepath.Join(root, "orgs"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open disk store: %w", err)
		}
	}
	// Writes that were in flight at the last stop were never acknowledged.
	if err := os.RemoveAll(filepath.Join(root, "tmp")); err != nil {
		return nil, fmt.Errorf("open disk store: clear tmp: %w", err)
	}
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("open disk store: %w", err)
	}
	dirf, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("open disk store: %w", err)
	}
	s := &Store{
		root:      root,
		opts:      opts,
		log:       opts.Logger.With("component", "cache.disk"),
		dirf:      dirf,
		ix:        newIndex(),
		orgByName: make(map[string]uint16),
	}
	s.gs = newGroupSync(func() error { return unix.Syncfs(int(s.dirf.Fd())) })
	if err := s.loadOrgs(); err != nil {
		dirf.Close()
		return nil, err
	}
	loaded, err := s.loadSnapshot()
	if err != nil {
		s.log.Warn("index snapshot unusable; rebuilding from files", "err", err)
	}
	s.log.Info("disk store open", "root", root, "entries", loaded)
	s.rebuilding.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.background(ctx)
	}()
	return s, nil
}

// Close stops the background work, waits for it and saves the index.
func (s *Store) Close() error {
	s.stop()
	s.wg.Wait()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.saveSnapshot()
	if cerr := s.dirf.Close(); err == nil {
		err = cerr
	}
	return err
}

// Ready reports whether the background walk has reconciled the index with
// the files (until then answers are checked against the filesystem).
func (s *Store) Ready() bool { return !s.rebuilding.Load() }

func (s *Store) background(ctx context.Context) {
	start := time.Now()
	if err := s.walk(ctx); err != nil {
		if ctx.Err() == nil {
			s.log.Error("index walk", "err", err)
		}
	} else {
		s.rebuilding.Store(false)
		s.log.Info("index rebuilt", "duration", time.Since(start), "entries", s.Len())
	}
	t := time.NewTicker(s.opts.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.saveSnapshot(); err != nil {
				s.log.Error("save index snapshot", "err", err)
			}
		}
	}
}

// Stats are the store's current totals.
type Stats struct {
	Entries   int
	Bytes     int64 // on disk, deduplicated
	Evictions int64
	Refusals  int64 // writes refused for quota or size limit
}

// Stats returns the store's totals.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Entries: s.ix.live, Bytes: s.physical, Evictions: s.evictions.Load(), Refusals: s.refusals.Load()}
}

// Len returns the number of entries.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ix.live
}

// Refs returns up to max entries from position from of the index, and the
// position to continue at (0 when done). Entries written meanwhile may be
// missed or seen twice; a caller wanting all of them walks again later.
func (s *Store) Refs(from uint32, max int) ([]blobstore.Ref, uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if from == 0 {
		from = 1
	}
	var refs []blobstore.Ref
	i := from
	for ; i < s.ix.n && len(refs) < max; i++ {
		e := s.ix.at(i)
		if e.flags&flagInUse == 0 {
			continue
		}
		refs = append(refs, blobstore.Ref{Org: s.orgs[e.org].name, Kind: e.kind, Digest: blobstore.Digest{Hash: e.hash, Size: e.size}})
	}
	if i >= s.ix.n {
		i = 0
	}
	return refs, i
}

// OrgBytes returns the bytes charged to org (each org pays for what it
// holds, deduplicated or not).
func (s *Store) OrgBytes(org string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if oi, ok := s.orgByName[org]; ok {
		return s.orgs[oi].bytes
	}
	return 0
}

func orgDirName(org string) string {
	h := sha256.Sum256([]byte(org))
	return hex.EncodeToString(h[:16])
}

// loadOrgs reads the org table from orgs/*/org.
func (s *Store) loadOrgs() error {
	des, err := os.ReadDir(filepath.Join(s.root, "orgs"))
	if err != nil {
		return fmt.Errorf("list orgs: %w", err)
	}
	for _, de := range des {
		dir := filepath.Join(s.root, "orgs", de.Name())
		b, err := os.ReadFile(filepath.Join(dir, "org"))
		if err != nil {
			s.log.Warn("org directory without org file; ignored", "dir", dir, "err", err)
			continue
		}
		name := string(b)
		if orgDirName(name) != de.Name() {
			s.log.Warn("org directory name does not match its org; ignored", "dir", dir)
			continue
		}
		if _, err := s.addOrgLocked(name, false); err != nil {
			return err
		}
	}
	return nil
}

// orgLocked returns the index of org, creating its directories if create.
func (s *Store) addOrgLocked(name string, create bool) (uint16, error) {
	if oi, ok := s.orgByName[name]; ok {
		return oi, nil
	}
	if len(s.orgs) >= 1<<16-1 {
		return 0, fmt.Errorf("add org: too many orgs")
	}
	dir := filepath.Join(s.root, "orgs", orgDirName(name))
	if create {
		if err := s.createOrgDir(dir, name); err != nil {
			return 0, err
		}
	}
	q, ok := s.opts.OrgQuotas[name]
	if !ok {
		q = s.opts.DefaultQuota
	}
	oi := uint16(len(s.orgs))
	s.orgs = append(s.orgs, &orgState{name: name, dir: dir, quota: q})
	s.orgByName[name] = oi
	return oi, nil
}

func (s *Store) createOrgDir(dir, name string) error {
	// Shard directories (xx/) are made when first needed.
	for _, k := range blobstore.Kinds {
		if err := os.MkdirAll(filepath.Join(dir, k.String()), 0o700); err != nil {
			return fmt.Errorf("create org directory: %w", err)
		}
	}
	tmp := filepath.Join(dir, "org.tmp")
	if err := os.WriteFile(tmp, []byte(name), 0o600); err != nil {
		return fmt.Errorf("create org directory: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "org")); err != nil {
		return fmt.Errorf("create org directory: %w", err)
	}
	return nil
}

func (s *Store) path(o *orgState, kind blobstore.Kind, h *blobstore.Hash) string {
	var buf [2 * blobstore.HashSize]byte
	hex.Encode(buf[:], h[:])
	return o.dir + "/" + kind.String() + "/" + string(buf[:2]) + "/" + string(buf[:])
}

func (s *Store) now() uint32 { return stamp(s.opts.Now()) }

// found is what lookup found of an entry.
type found struct {
	path   string // its file
	size   int64  // the blob's size
	stored int64  // the file's size
	zstd   bool   // stored compressed (path ends in .zst)
}

// lookup finds ref's entry and refreshes it. While the index is being
// rebuilt, the filesystem has the last word: a file missing from the index is
// added, an entry whose file is gone is dropped.
func (s *Store) lookup(ref blobstore.Ref) (found, bool) {
	s.mu.Lock()
	oi, known := s.orgByName[ref.Org]
	if !known {
		s.mu.Unlock()
		return found{}, false
	}
	o := s.orgs[oi]
	i := s.ix.find(oi, ref.Kind, &ref.Digest.Hash)
	var f found
	if i != 0 {
		s.ix.touch(&o.lru, i, s.now())
		f = s.foundLocked(o, i)
	}
	s.mu.Unlock()
	if !s.rebuilding.Load() {
		return f, i != 0
	}
	path := s.path(o, ref.Kind, &ref.Digest.Hash)
	zstd := false
	fi, err := os.Stat(path)
	size := int64(0)
	if err == nil {
		size = fi.Size()
	} else if ref.Kind == blobstore.KindCAS {
		path += zstdSuffix
		if fi, size, err = statZstd(path); err == nil {
			zstd = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i = s.ix.find(oi, ref.Kind, &ref.Digest.Hash)
	switch {
	case err != nil && i != 0:
		s.dropLocked(o, i)
		return found{}, false
	case err != nil:
		return found{}, false
	case i == 0:
		if !fi.Mode().IsRegular() {
			return found{}, false
		}
		i = s.addLocked(oi, ref.Kind, &ref.Digest.Hash, size, fi.Size(), zstd, s.now())
		s.ix.at(i).flags |= flagSeen
	}
	return s.foundLocked(o, i), true
}

// statZstd stats a compressed blob's file and reads the blob's size from
// its header.
func statZstd(path string) (fs.FileInfo, int64, error) {
	f, err := openRead(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size, err := readZstdHeader(f)
	return fi, size, err
}

func (s *Store) foundLocked(o *orgState, i uint32) found {
	e := s.ix.at(i)
	f := found{path: s.path(o, e.kind, &e.hash), size: e.size, stored: e.stored, zstd: e.flags&flagZstd != 0}
	if f.zstd {
		f.path += zstdSuffix
	}
	return f
}

// addLocked indexes a file that exists and accounts for it: size is the
// blob's, stored the file's (what quotas and the size limit count).
func (s *Store) addLocked(oi uint16, kind blobstore.Kind, h *blobstore.Hash, size, stored int64, zstd bool, atime uint32) uint32 {
	o := s.orgs[oi]
	if kind != blobstore.KindCAS || s.ix.other(oi, kind, h) == 0 {
		s.physical += stored
	}
	i := s.ix.insert(oi, kind, h, size, atime)
	e := s.ix.at(i)
	e.stored = stored
	if zstd {
		e.flags |= flagZstd
	}
	s.ix.pushFront(&o.lru, i)
	o.bytes += stored
	o.count++
	return i
}

// dropLocked forgets entry i (its file is gone or is being replaced).
func (s *Store) dropLocked(o *orgState, i uint32) {
	e := s.ix.at(i)
	h, kind, oi, stored := e.hash, e.kind, e.org, e.stored
	s.ix.unlink(&o.lru, i)
	s.ix.remove(i)
	o.bytes -= stored
	o.count--
	if kind != blobstore.KindCAS || s.ix.other(oi, kind, &h) == 0 {
		s.physical -= stored
	}
}

// Get implements blobstore.Store. A blob stored compressed is decompressed
// as it is read, and checked against its digest before its last byte is
// served (blobstore.NewZstdReader): a corrupt file is an error, and is
// dropped so that the next FindMissing asks for the blob again.
func (s *Store) Get(ctx context.Context, ref blobstore.Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if ref.Kind == blobstore.KindCAS && ref.Digest.IsEmpty() {
		if _, err := blobstore.CheckRange(0, offset, limit); err != nil {
			return nil, 0, err
		}
		return io.NopCloser(eofReader{}), 0, nil
	}
	e, ok := s.lookup(ref)
	if !ok || (ref.Kind == blobstore.KindCAS && ref.Digest.Size >= 0 && e.size != ref.Digest.Size) {
		return nil, 0, fmt.Errorf("%s: %w", ref, blobstore.ErrNotFound)
	}
	n, err := blobstore.CheckRange(e.size, offset, limit)
	if err != nil {
		return nil, 0, err
	}
	f, err := s.open(ref, e)
	if err != nil {
		return nil, 0, err
	}
	if e.zstd {
		d := blobstore.Digest{Hash: ref.Digest.Hash, Size: e.size}
		var r io.ReadCloser
		if e.size <= smallZstd {
			r, err = blobstore.DecodeZstdBlob(f, e.stored-zstdHeaderSize, d, offset, n)
			f.Close()
		} else {
			r, err = blobstore.NewZstdReader(f, d, offset, n)
		}
		if err != nil {
			if errors.Is(err, blobstore.ErrCorrupt) {
				s.dropCorrupt(ref, err)
			}
			return nil, 0, fmt.Errorf("read %s: %w", ref, err)
		}
		return &corruptWatch{r: r, s: s, ref: ref}, e.size, nil
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("seek %s: %w", ref, err)
		}
	}
	return &fileReader{f: f, r: io.LimitedReader{R: f, N: n}}, e.size, nil
}

// smallZstd is the largest compressed blob decoded in one piece (rather
// than streamed) by a plain read.
const smallZstd = 256 << 10

// GetZstd implements blobstore.ZstdStore: the zstd stream of a blob stored
// compressed, as it is on disk (sendfile-able); ErrNotZstd for the others.
func (s *Store) GetZstd(ctx context.Context, ref blobstore.Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if ref.Kind != blobstore.KindCAS || ref.Digest.IsEmpty() {
		return nil, 0, blobstore.ErrNotZstd
	}
	e, ok := s.lookup(ref)
	if !ok || (ref.Digest.Size >= 0 && e.size != ref.Digest.Size) {
		return nil, 0, fmt.Errorf("%s: %w", ref, blobstore.ErrNotFound)
	}
	if !e.zstd {
		return nil, 0, blobstore.ErrNotZstd
	}
	total := e.stored - zstdHeaderSize
	n, err := blobstore.CheckRange(total, offset, limit)
	if err != nil {
		return nil, 0, err
	}
	f, err := s.open(ref, e)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekCurrent); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("seek %s: %w", ref, err)
		}
	}
	return &fileReader{f: f, r: io.LimitedReader{R: f, N: n}}, total, nil
}

// open opens entry e's file, past the header for a compressed one.
func (s *Store) open(ref blobstore.Ref, e found) (*os.File, error) {
	f, err := openRead(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		s.forget(ref)
		return nil, fmt.Errorf("%s: %w", ref, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", ref, err)
	}
	if e.zstd {
		size, err := readZstdHeader(f)
		if err == nil && size != e.size {
			err = fmt.Errorf("header says %d bytes, the index %d", size, e.size)
		}
		if err != nil {
			f.Close()
			err = fmt.Errorf("%w: %s: %v", blobstore.ErrCorrupt, ref, err)
			s.dropCorrupt(ref, err)
			return nil, err
		}
	}
	return f, nil
}

// corruptWatch drops its blob when reading finds it corrupt. It closes
// its reader once, however often it is closed (the reader's buffers go
// back to a pool).
type corruptWatch struct {
	r      io.ReadCloser
	s      *Store
	ref    blobstore.Ref
	closed bool
}

func (c *corruptWatch) Read(p []byte) (int, error) {
	if c.closed {
		return 0, os.ErrClosed
	}
	n, err := c.r.Read(p)
	if err != nil && errors.Is(err, blobstore.ErrCorrupt) {
		c.s.dropCorrupt(c.ref, err)
	}
	return n, err
}

func (c *corruptWatch) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.r.Close()
}

// dropCorrupt removes a blob whose file failed its check.
func (s *Store) dropCorrupt(ref blobstore.Ref, err error) {
	s.log.Error("stored blob is corrupt; removed", "kind", ref.Kind.String(), "org", ref.Org, "err", err)
	s.mu.Lock()
	defer s.mu.Unlock()
	oi, ok := s.orgByName[ref.Org]
	if !ok {
		return
	}
	o := s.orgs[oi]
	if i := s.ix.find(oi, ref.Kind, &ref.Digest.Hash); i != 0 {
		f := s.foundLocked(o, i)
		s.dropLocked(o, i)
		os.Remove(f.path)
	}
}

// openRead opens a blob for reading. os.Open would also fstat the file
// (to decide whether to poll it): one system call more per read, which
// small blobs notice.
func openRead(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// forget drops ref's entry after its file was found missing.
func (s *Store) forget(ref blobstore.Ref) {
	s.mu.Lock()
	defer s.mu.Unlock()
	oi, ok := s.orgByName[ref.Org]
	if !ok {
		return
	}
	if i := s.ix.find(oi, ref.Kind, &ref.Digest.Hash); i != 0 {
		s.log.Warn("indexed blob missing on disk", "kind", ref.Kind.String(), "org", ref.Org)
		s.dropLocked(s.orgs[oi], i)
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// fileReader serves a range of a file. WriteTo hands the *io.LimitedReader
// of the *os.File to the destination so that net/http can use sendfile.
type fileReader struct {
	f *os.File
	r io.LimitedReader
}

func (r *fileReader) Read(p []byte) (int, error)         { return r.r.Read(p) }
func (r *fileReader) Close() error                       { return r.f.Close() }
func (r *fileReader) WriteTo(w io.Writer) (int64, error) { return io.Copy(w, &r.r) }

// FindMissing implements blobstore.Store.
func (s *Store) FindMissing(ctx context.Context, org string, kind blobstore.Kind, ds []blobstore.Digest) ([]blobstore.Digest, error) {
	var missing []blobstore.Digest
	if s.rebuilding.Load() {
		for _, d := range ds {
			if kind == blobstore.KindCAS && d.IsEmpty() {
				continue
			}
			if _, ok := s.lookup(blobstore.Ref{Org: org, Kind: kind, Digest: d}); !ok {
				missing = append(missing, d)
			}
		}
		return missing, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	oi, known := s.orgByName[org]
	now := s.now()
	for _, d := range ds {
		if kind == blobstore.KindCAS && d.IsEmpty() {
			continue
		}
		if !known {
			missing = append(missing, d)
			continue
		}
		i := s.ix.find(oi, kind, &d.Hash)
		// A CAS digest names a size too: a wrong size is not the blob.
		if i == 0 || (kind == blobstore.KindCAS && d.Size >= 0 && s.ix.at(i).size != d.Size) {
			missing = append(missing, d)
			continue
		}
		s.ix.touch(&s.orgs[oi].lru, i, now)
	}
	return missing, nil
}
