package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// NewWriter implements blobstore.Store. The ref, the size and the content
// are checked by blobstore.Verifying in front of the store.
func (s *Store) NewWriter(ctx context.Context, ref blobstore.Ref, size int64) (blobstore.Writer, error) {
	w, err := s.newWriter(ref, size)
	if err != nil || w.f == nil {
		return w, err
	}
	if ref.Kind == blobstore.KindCAS && !s.opts.NoCompression && size >= compressMin {
		w.sample = make([]byte, 0, min(size, sampleSize))
	}
	return w, nil
}

// NewZstdWriter implements blobstore.ZstdStore: the zstd stream written is
// stored as it comes (blobstore.Verifying checks what it decompresses to).
func (s *Store) NewZstdWriter(ctx context.Context, ref blobstore.Ref) (blobstore.Writer, error) {
	if ref.Kind != blobstore.KindCAS || s.opts.NoCompression || ref.Digest.IsEmpty() {
		return nil, blobstore.ErrNotZstd
	}
	w, err := s.newWriter(ref, ref.Digest.Size)
	if err != nil || w.f == nil {
		return w, err
	}
	w.raw = true
	if err := w.startZstd(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

func (s *Store) newWriter(ref blobstore.Ref, size int64) (*writer, error) {
	if size > s.opts.MaxBlobSize || (s.opts.MaxBytes > 0 && size > s.opts.MaxBytes) {
		s.refusals.Add(1)
		return nil, fmt.Errorf("%w: %s: %d bytes, limit %d", blobstore.ErrTooLarge, ref, size, s.opts.MaxBlobSize)
	}
	w := &writer{s: s, ref: ref, size: size}
	if ref.Kind == blobstore.KindCAS && ref.Digest.IsEmpty() {
		w.exists = true
		return w, nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: store closed", blobstore.ErrUnavailable)
	}
	q := s.opts.DefaultQuota
	if oi, ok := s.orgByName[ref.Org]; ok {
		q = s.orgs[oi].quota
		if ref.Kind == blobstore.KindCAS && !s.rebuilding.Load() {
			if i := s.ix.find(oi, ref.Kind, &ref.Digest.Hash); i != 0 && s.ix.at(i).size == size {
				// The org has it already: take the bytes, keep nothing.
				w.exists = true
			}
		}
	} else if q2, ok := s.opts.OrgQuotas[ref.Org]; ok {
		q = q2
	}
	s.mu.Unlock()
	if q.Hard > 0 && size > q.Hard {
		s.refusals.Add(1)
		return nil, fmt.Errorf("%w: %s: %d bytes, org quota %d", blobstore.ErrQuotaExceeded, ref, size, q.Hard)
	}
	if w.exists {
		return w, nil
	}
	f, err := os.CreateTemp(s.root+"/tmp", "w-")
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	w.f = f
	return w, nil
}

// CAS blobs of at least compressMin bytes are stored compressed when
// their first sampleSize bytes (all of a smaller blob) compress to at most
// 7/8 of their size; the others as they came. Below compressMin the
// saving is a few hundred bytes at most, less than the file system's
// block.
const (
	compressMin = 1 << 10
	sampleSize  = 128 << 10
)

// writer writes a blob to a temporary file. When the org already holds
// the CAS blob, it only counts the bytes. A CAS blob that may be stored
// compressed is held in sample until its form is decided; then it goes
// to the file through enc (compressed) or directly.
type writer struct {
	s        *Store
	ref      blobstore.Ref
	size     int64
	n        int64 // bytes received
	f        *os.File
	fn       int64 // bytes written to f
	exists   bool
	done     bool
	sample   []byte        // non-nil while the form is undecided
	enc      *zstd.Encoder // compressing into f
	zstd     bool          // f holds the header and a zstd stream
	raw      bool          // what is written is already zstd (NewZstdWriter)
	kicked   int64         // file bytes handed to writeback early (see kick)
	flushing chan struct{} // closed when the last background fdatasync ended
}

// kickBytes is how much written data a writer lets accumulate before it
// starts making it durable in the background. A large upload then reaches
// the disk, and the disk's cache is flushed, while the rest of it is still
// arriving and being hashed, and the commit's sync waits only for the tail.
// (On the development VM this took a durable 64 MiB write from ~95 to
// ~70 ms.)
const kickBytes = 8 << 20

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write %s: writer closed", w.ref)
	}
	if w.f == nil {
		w.n += int64(len(p))
		return len(p), nil
	}
	n := len(p)
	if w.sample != nil {
		k := min(len(p), cap(w.sample)-len(w.sample))
		w.sample = append(w.sample, p[:k]...)
		p = p[k:]
		if len(w.sample) < cap(w.sample) || w.n+int64(k) == w.size {
			w.n += int64(k)
			return n, nil
		}
		if err := w.decide(); err != nil {
			return k, err
		}
		w.n += int64(k)
	}
	var err error
	if w.enc != nil {
		_, err = w.enc.Write(p)
	} else {
		_, err = w.fileWrite(p)
	}
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", w.ref, err)
	}
	w.n += int64(len(p))
	return n, nil
}

// fileWrite writes to the temporary file, starting writeback every
// kickBytes.
func (w *writer) fileWrite(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.fn += int64(n)
	if err == nil && !w.s.opts.NoSync && w.fn-w.kicked >= kickBytes {
		w.kick()
	}
	return n, err
}

// decide chooses the blob's form from its sample and writes the sample.
func (w *writer) decide() error {
	sample := w.sample
	w.sample = nil
	whole := int64(len(sample)) == w.size
	var z []byte
	if whole {
		z = appendZstdHeader(make([]byte, 0, zstdHeaderSize+len(sample)), w.size)
	}
	z = blobstore.CompressZstd(z, sample)
	if len(z) > len(sample)-len(sample)/8 {
		_, err := w.fileWrite(sample)
		return err
	}
	if whole {
		w.zstd = true
		_, err := w.fileWrite(z)
		return err
	}
	if err := w.startZstd(); err != nil {
		return err
	}
	w.enc = blobstore.AcquireEncoder(fileWriter{w})
	_, err := w.enc.Write(sample)
	return err
}

// startZstd writes the header of a compressed blob.
func (w *writer) startZstd() error {
	w.zstd = true
	_, err := w.fileWrite(appendZstdHeader(nil, w.size))
	return err
}

type fileWriter struct{ w *writer }

func (f fileWriter) Write(p []byte) (int, error) { return f.w.fileWrite(p) }

// kick starts writeback of what was written since the last kick
// (sync_file_range, which does not wait) and, unless the last one is still
// running, an fdatasync on another goroutine, so the device flushes its
// cache while the upload goes on. The goroutine syncs a duplicate of the
// descriptor, so the writer never waits for it and may close the file
// under it. Both are only a head start for the group commit's syncfs,
// which reports any error, so their errors are ignored.
func (w *writer) kick() {
	fd := int(w.f.Fd())
	_ = unix.SyncFileRange(fd, w.kicked, w.fn-w.kicked, unix.SYNC_FILE_RANGE_WRITE)
	w.kicked = w.fn
	if w.flushing != nil {
		select {
		case <-w.flushing:
		default:
			return
		}
	}
	dfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return
	}
	done := make(chan struct{})
	w.flushing = done
	go func() {
		_ = unix.Fdatasync(dfd)
		unix.Close(dfd)
		close(done)
	}()
}

func (w *writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if w.enc != nil {
		blobstore.ReleaseEncoder(w.enc)
		w.enc = nil
	}
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
	return nil
}

func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return fmt.Errorf("commit %s: writer closed", w.ref)
	}
	defer w.Close()
	if w.exists {
		if w.ref.Digest.IsEmpty() {
			return nil
		}
		// Refresh it; if it was evicted meanwhile, the client must upload
		// again: say so rather than acknowledge what is not stored.
		if _, err := w.s.FindMissing(ctx, w.ref.Org, w.ref.Kind, []blobstore.Digest{w.ref.Digest}); err != nil {
			return err
		}
		if _, ok := w.s.lookup(w.ref); !ok {
			return fmt.Errorf("%s: evicted while being written; upload it again: %w", w.ref, blobstore.ErrUnavailable)
		}
		return nil
	}
	if w.sample != nil {
		if err := w.decide(); err != nil {
			return fmt.Errorf("write %s: %w", w.ref, err)
		}
	}
	if w.enc != nil {
		err := w.enc.Close()
		blobstore.ReleaseEncoder(w.enc)
		w.enc = nil
		if err != nil {
			return fmt.Errorf("write %s: %w", w.ref, err)
		}
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", w.ref, err)
	}
	if err := w.s.install(w.ref, w.size, w.fn, w.zstd, w.f.Name()); err != nil {
		return err
	}
	if !w.s.opts.NoSync {
		if err := w.s.gs.wait(); err != nil {
			return fmt.Errorf("sync %s: %w", w.ref, err)
		}
	}
	return nil
}

// install moves the verified temporary file (stored bytes, compressed if
// zstd) into place and indexes it, evicting what the quotas and the size
// limit require.
func (s *Store) install(ref blobstore.Ref, size, stored int64, zstd bool, tmp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: store closed", blobstore.ErrUnavailable)
	}
	oi, err := s.addOrgLocked(ref.Org, true)
	if err != nil {
		return err
	}
	o := s.orgs[oi]
	h := &ref.Digest.Hash
	if i := s.ix.find(oi, ref.Kind, h); i != 0 {
		// Replaced (an action cache update, or two writers of one blob).
		if old := s.foundLocked(o, i); old.zstd != zstd {
			os.Remove(old.path)
		}
		s.dropLocked(o, i)
	}
	now := s.now()
	var other found
	ownStored, ownZstd := stored, zstd
	if ref.Kind == blobstore.KindCAS {
		if j := s.ix.other(oi, ref.Kind, h); j != 0 {
			// Another org's copy: link it, in its form.
			other = s.foundLocked(s.orgs[s.ix.at(j).org], j)
			stored, zstd = other.stored, other.zstd
		}
	}
	if err := s.makeRoomLocked(oi, ref.Kind, h, stored, now); err != nil {
		s.refusals.Add(1)
		return err
	}
	dst := s.path(o, ref.Kind, h)
	if zstd {
		dst += zstdSuffix
	}
	if sh := &o.shards[ref.Kind][h[0]]; !*sh {
		if err := os.Mkdir(filepath.Dir(dst), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("install %s: %w", ref, err)
		}
		*sh = true
	}
	linked := false
	if other.path != "" {
		err := os.Link(other.path, dst)
		if errors.Is(err, fs.ErrExist) {
			if os.Remove(dst) == nil {
				err = os.Link(other.path, dst)
			}
		}
		linked = err == nil
		if !linked {
			// Keep this write's own file, in its own form.
			stored, zstd = ownStored, ownZstd
			dst = s.path(o, ref.Kind, h)
			if zstd {
				dst += zstdSuffix
			}
		}
	}
	if !linked {
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("install %s: %w", ref, err)
		}
	}
	i := s.addLocked(oi, ref.Kind, h, size, stored, zstd, now)
	s.ix.at(i).flags |= flagSeen
	// Above the soft quota: evict the org's oldest evictable entries.
	if q := o.quota.Soft; q > 0 {
		for o.bytes > q && s.evictOneLocked(o, now, i) {
		}
	}
	return nil
}

// makeRoomLocked evicts until a new entry of size bytes fits the org's hard
// quota and the store's size limit, or returns ErrQuotaExceeded.
func (s *Store) makeRoomLocked(oi uint16, kind blobstore.Kind, h *blobstore.Hash, size int64, now uint32) error {
	o := s.orgs[oi]
	if q := o.quota.Hard; q > 0 {
		for o.bytes+size > q {
			if !s.evictOneLocked(o, now, 0) {
				return fmt.Errorf("%w: org holds %d bytes, quota %d, nothing older than the retention age to evict", blobstore.ErrQuotaExceeded, o.bytes, q)
			}
		}
	}
	if s.opts.MaxBytes > 0 {
		for {
			need := size
			if kind == blobstore.KindCAS && s.ix.other(oi, kind, h) != 0 {
				need = 0 // deduplicated: no new bytes on disk
			}
			if s.physical+need <= s.opts.MaxBytes {
				break
			}
			victim := s.oldestOrgLocked(now)
			if victim == nil || !s.evictOneLocked(victim, now, 0) {
				return fmt.Errorf("%w: store holds %d bytes of %d, nothing older than the retention age to evict", blobstore.ErrQuotaExceeded, s.physical, s.opts.MaxBytes)
			}
		}
	}
	return nil
}

// oldestOrgLocked returns the org whose least recently used entry is the
// oldest evictable one, or nil.
func (s *Store) oldestOrgLocked(now uint32) *orgState {
	var best *orgState
	var bestAt uint32
	for _, o := range s.orgs {
		if o.lru.tail == 0 {
			continue
		}
		at := s.ix.at(o.lru.tail).atime
		if !s.evictable(at, now) {
			continue
		}
		if best == nil || at < bestAt {
			best, bestAt = o, at
		}
	}
	return best
}

func (s *Store) evictable(atime, now uint32) bool {
	min := uint32(s.opts.MinRetention.Seconds())
	return now >= atime && now-atime >= min
}

// evictOneLocked removes the org's least recently used entry if it is older
// than the retention age (and is not keep), and reports whether it did.
func (s *Store) evictOneLocked(o *orgState, now uint32, keep uint32) bool {
	i := o.lru.tail
	if i == 0 || i == keep || !s.evictable(s.ix.at(i).atime, now) {
		return false
	}
	p := s.foundLocked(o, i).path
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("evict blob", "org", o.name, "err", err)
		return false
	}
	s.dropLocked(o, i)
	s.evictions.Add(1)
	return true
}
