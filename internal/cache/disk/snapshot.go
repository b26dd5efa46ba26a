package disk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// The snapshot is the index as it was when saved:
//
//	"NIMBUSIX" version:u32 orgs:u32 { len:u16 name }* entries:u64
//	{ hash:32 size:i64 atime:u32 org:u16 kind:u8 stored:i64 flags:u8 }* crc32c:u32
//
// entries of each org from most to least recently used; integers
// little-endian; flags bit 0: stored compressed. Version 1 (before blobs
// were stored compressed) lacks stored and flags, and still loads.
const (
	snapshotMagic   = "NIMBUSIX"
	snapshotVersion = 2
	recordSizeV1    = 32 + 8 + 4 + 2 + 1
	recordSize      = recordSizeV1 + 8 + 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type snapRecord struct {
	hash   blobstore.Hash
	size   int64
	stored int64
	atime  uint32
	org    uint16
	kind   blobstore.Kind
	zstd   bool
}

// saveSnapshot writes the index to root/index atomically and durably.
func (s *Store) saveSnapshot() error {
	s.mu.Lock()
	names := make([]string, len(s.orgs))
	for i, o := range s.orgs {
		names[i] = o.name
	}
	recs := make([]snapRecord, 0, s.ix.live)
	for oi, o := range s.orgs {
		for i := o.lru.head; i != 0; i = s.ix.at(i).next {
			e := s.ix.at(i)
			recs = append(recs, snapRecord{hash: e.hash, size: e.size, stored: e.stored, atime: e.atime, org: uint16(oi), kind: e.kind, zstd: e.flags&flagZstd != 0})
		}
	}
	s.mu.Unlock()

	tmp := filepath.Join(s.root, "index.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(f, crc), 1<<20)
	var b [recordSize]byte
	bw.WriteString(snapshotMagic)
	binary.Write(bw, binary.LittleEndian, uint32(snapshotVersion))
	binary.Write(bw, binary.LittleEndian, uint32(len(names)))
	for _, n := range names {
		binary.Write(bw, binary.LittleEndian, uint16(len(n)))
		bw.WriteString(n)
	}
	binary.Write(bw, binary.LittleEndian, uint64(len(recs)))
	for _, r := range recs {
		copy(b[:32], r.hash[:])
		binary.LittleEndian.PutUint64(b[32:], uint64(r.size))
		binary.LittleEndian.PutUint32(b[40:], r.atime)
		binary.LittleEndian.PutUint16(b[44:], r.org)
		b[46] = byte(r.kind)
		binary.LittleEndian.PutUint64(b[47:], uint64(r.stored))
		b[55] = 0
		if r.zstd {
			b[55] = 1
		}
		bw.Write(b[:])
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if err := binary.Write(f, binary.LittleEndian, crc.Sum32()); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.root, "index")); err != nil {
		return fmt.Errorf("save index: %w", err)
	}
	return s.dirf.Sync()
}

// loadSnapshot fills the empty index from root/index, returning how many
// entries it loaded. A missing snapshot is not an error.
func (s *Store) loadSnapshot() (int, error) {
	f, err := os.Open(filepath.Join(s.root, "index"))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load index: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("load index: %w", err)
	}
	if fi.Size() < 4 {
		return 0, fmt.Errorf("load index: truncated")
	}
	// Check the checksum first, so a torn file is never half loaded.
	crc := crc32.New(castagnoli)
	if _, err := io.Copy(crc, io.NewSectionReader(f, 0, fi.Size()-4)); err != nil {
		return 0, fmt.Errorf("load index: %w", err)
	}
	var want uint32
	if err := binary.Read(io.NewSectionReader(f, fi.Size()-4, 4), binary.LittleEndian, &want); err != nil {
		return 0, fmt.Errorf("load index: %w", err)
	}
	if crc.Sum32() != want {
		return 0, fmt.Errorf("load index: checksum mismatch")
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, fi.Size()-4), 1<<20)
	return s.readSnapshot(br)
}

func (s *Store) readSnapshot(br *bufio.Reader) (int, error) {
	var magic [8]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || string(magic[:]) != snapshotMagic {
		return 0, fmt.Errorf("load index: not an index snapshot")
	}
	var version, norgs uint32
	if err := binary.Read(br, binary.LittleEndian, &version); err != nil || version < 1 || version > snapshotVersion {
		return 0, fmt.Errorf("load index: unknown version %d", version)
	}
	if err := binary.Read(br, binary.LittleEndian, &norgs); err != nil || norgs >= 1<<16 {
		return 0, fmt.Errorf("load index: bad org count")
	}
	orgMap := make([]int, norgs) // snapshot org -> store org, -1 if unknown
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range orgMap {
		var n uint16
		if err := binary.Read(br, binary.LittleEndian, &n); err != nil {
			return 0, fmt.Errorf("load index: %w", err)
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return 0, fmt.Errorf("load index: %w", err)
		}
		oi, ok := s.orgByName[string(name)]
		orgMap[i] = -1
		if ok {
			orgMap[i] = int(oi)
		}
	}
	var count uint64
	if err := binary.Read(br, binary.LittleEndian, &count); err != nil {
		return 0, fmt.Errorf("load index: %w", err)
	}
	var buf [recordSize]byte
	b := buf[:]
	if version == 1 {
		b = buf[:recordSizeV1]
	}
	loaded := 0
	for range count {
		if _, err := io.ReadFull(br, b); err != nil {
			return loaded, fmt.Errorf("load index: %w", err)
		}
		var h blobstore.Hash
		copy(h[:], b[:32])
		size := int64(binary.LittleEndian.Uint64(b[32:]))
		atime := binary.LittleEndian.Uint32(b[40:])
		so := binary.LittleEndian.Uint16(b[44:])
		kind := blobstore.Kind(b[46])
		stored, zstd := size, false
		if version >= 2 {
			stored, zstd = int64(binary.LittleEndian.Uint64(b[47:])), b[55]&1 != 0
		}
		// A plain file's stored size is its size; a record that says
		// otherwise is damaged.
		if int(so) >= len(orgMap) || orgMap[so] < 0 || !kind.Valid() || size < 0 || stored < 0 ||
			(zstd && kind != blobstore.KindCAS) || (!zstd && stored != size) {
			continue
		}
		oi := uint16(orgMap[so])
		if s.ix.find(oi, kind, &h) != 0 {
			continue
		}
		o := s.orgs[oi]
		if kind != blobstore.KindCAS || s.ix.other(oi, kind, &h) == 0 {
			s.physical += stored
		}
		i := s.ix.insert(oi, kind, &h, size, atime)
		e := s.ix.at(i)
		e.stored = stored
		if zstd {
			e.flags |= flagZstd
		}
		s.ix.pushBack(&o.lru, i)
		o.bytes += stored
		o.count++
		loaded++
	}
	return loaded, nil
}
