package disk

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// A CAS blob stored compressed is a file named <hash>.zst (beside where
// <hash> would be): a header, then the blob as a zstd stream, served as
// it is to clients that read compressed-blobs/zstd. The file name says
// the form, never the content: a blob stored as it came may well begin
// with these bytes. The header:
//
//	"NMBZ" version:u8(1) reserved:3 zero bytes size:u64
//
// size is the blob's (uncompressed) size, little-endian, so that the
// index can be rebuilt from the files.
const (
	zstdSuffix     = ".zst"
	zstdMagic      = "NMBZ"
	zstdVersion    = 1
	zstdHeaderSize = 16
)

// appendZstdHeader appends the header of a compressed blob of size bytes.
func appendZstdHeader(b []byte, size int64) []byte {
	b = append(b, zstdMagic...)
	b = append(b, zstdVersion, 0, 0, 0)
	return binary.LittleEndian.AppendUint64(b, uint64(size))
}

// parseZstdHeader returns the blob size a compressed file's header gives.
func parseZstdHeader(b []byte) (int64, error) {
	if len(b) < zstdHeaderSize {
		return 0, fmt.Errorf("compressed blob header: %d bytes, want %d", len(b), zstdHeaderSize)
	}
	if string(b[:4]) != zstdMagic {
		return 0, fmt.Errorf("compressed blob header: bad magic %q", b[:4])
	}
	if b[4] != zstdVersion || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return 0, fmt.Errorf("compressed blob header: unknown version %d.%d.%d.%d", b[4], b[5], b[6], b[7])
	}
	size := binary.LittleEndian.Uint64(b[8:16])
	if size > 1<<50 {
		return 0, fmt.Errorf("compressed blob header: size %d out of range", size)
	}
	return int64(size), nil
}

// readZstdHeader reads and parses f's header, leaving f after it.
func readZstdHeader(f *os.File) (int64, error) {
	var b [zstdHeaderSize]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return 0, fmt.Errorf("compressed blob header: %w", err)
	}
	return parseZstdHeader(b[:])
}
