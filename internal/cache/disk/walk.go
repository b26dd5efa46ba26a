package disk

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// walk reconciles the index with the files: files missing from the index
// are added (their modification time standing for their last use), entries
// whose files are gone are dropped. It runs while the store serves.
func (s *Store) walk(ctx context.Context) error {
	s.mu.Lock()
	for i := uint32(1); i < s.ix.n; i++ {
		s.ix.at(i).flags &^= flagSeen
	}
	orgs := len(s.orgs)
	s.mu.Unlock()
	for oi := range orgs {
		s.mu.Lock()
		o := s.orgs[oi]
		s.mu.Unlock()
		for _, kind := range blobstore.Kinds {
			for shard := range 256 {
				if err := ctx.Err(); err != nil {
					return err
				}
				dir := filepath.Join(o.dir, kind.String(), hexByte(shard))
				if err := s.walkDir(uint16(oi), kind, dir); err != nil {
					return err
				}
			}
		}
	}
	// Orgs created during the walk were created empty: all of their
	// entries were written (and marked) since.
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := uint32(1); i < s.ix.n; i++ {
		e := s.ix.at(i)
		if e.flags&flagInUse != 0 && e.flags&flagSeen == 0 && int(e.org) < orgs {
			s.dropLocked(s.orgs[e.org], i)
		}
	}
	return nil
}

func hexByte(b int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}

func (s *Store) walkDir(oi uint16, kind blobstore.Kind, dir string) error {
	des, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	type file struct {
		h    blobstore.Hash
		zstd bool
	}
	hs := make([]file, 0, len(des))
	for _, de := range des {
		name, zstd := strings.CutSuffix(de.Name(), zstdSuffix)
		h, err := blobstore.ParseHash(name)
		if err != nil || !de.Type().IsRegular() || (zstd && kind != blobstore.KindCAS) {
			s.log.Warn("unexpected file in store; ignored", "path", filepath.Join(dir, de.Name()))
			continue
		}
		hs = append(hs, file{h, zstd})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[oi]
	for k := range hs {
		h := &hs[k].h
		if i := s.ix.find(oi, kind, h); i != 0 {
			s.ix.at(i).flags |= flagSeen
			continue
		}
		// Not indexed: nothing can evict it meanwhile, but check it is
		// still there (it may have been indexed and evicted since ReadDir).
		p := s.path(o, kind, h)
		var fi os.FileInfo
		var err error
		var size int64
		if hs[k].zstd {
			fi, size, err = statZstd(p + zstdSuffix)
			if err != nil && !os.IsNotExist(err) {
				s.log.Warn("compressed blob unreadable; ignored", "path", p+zstdSuffix, "err", err)
			}
		} else if fi, err = os.Stat(p); err == nil {
			size = fi.Size()
		}
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		i := s.addLocked(oi, kind, h, size, fi.Size(), hs[k].zstd, stamp(fi.ModTime()))
		s.ix.unlink(&o.lru, i)
		s.ix.insertSorted(&o.lru, i)
		s.ix.at(i).flags |= flagSeen
	}
	return nil
}
