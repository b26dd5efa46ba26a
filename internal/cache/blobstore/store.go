package blobstore

import (
	"context"
	"fmt"
	"io"
)

// Store is a blob store. Implementations are safe for concurrent use.
type Store interface {
	// Get opens ref for reading from offset, at most limit bytes (limit <= 0:
	// to the end). It returns the blob's total size. A missing blob is
	// ErrNotFound; an offset past the end is ErrInvalid.
	Get(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error)
	// FindMissing returns the digests of ds that org cannot read under kind,
	// in their original order, and refreshes the ones it can (so that they
	// are not evicted next).
	FindMissing(ctx context.Context, org string, kind Kind, ds []Digest) ([]Digest, error)
	// NewWriter starts writing size bytes to ref. Nothing is visible until
	// Commit succeeds; Close without Commit discards.
	NewWriter(ctx context.Context, ref Ref, size int64) (Writer, error)
}

// Writer receives a blob's bytes.
type Writer interface {
	io.Writer
	// Commit verifies what was written (size, and hash for KindCAS), makes it
	// durable and visible. A mismatch is ErrInvalid.
	Commit(ctx context.Context) error
	// Close releases the writer; after a Commit it is a no-op.
	Close() error
}

// Put writes size bytes from r to ref.
func Put(ctx context.Context, s Store, ref Ref, size int64, r io.Reader) error {
	w, err := s.NewWriter(ctx, ref, size)
	if err != nil {
		return err
	}
	defer w.Close()
	buf := make([]byte, min(max(size+1, 512), 1<<20))
	n, err := io.CopyBuffer(w, io.LimitReader(r, size+1), buf)
	if err != nil {
		return fmt.Errorf("write %s: %w", ref, err)
	}
	if n != size {
		return fmt.Errorf("%w: %s: got %d bytes, want %d", ErrInvalid, ref, n, size)
	}
	return w.Commit(ctx)
}

// PutBytes writes b to ref.
func PutBytes(ctx context.Context, s Store, ref Ref, b []byte) error {
	w, err := s.NewWriter(ctx, ref, int64(len(b)))
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", ref, err)
	}
	return w.Commit(ctx)
}

// GetBytes reads all of ref, refusing blobs larger than max bytes.
func GetBytes(ctx context.Context, s Store, ref Ref, max int64) ([]byte, error) {
	r, size, err := s.Get(ctx, ref, 0, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if size > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, ref, size, max)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	return b, nil
}

// CheckRange validates an offset and limit against a blob's size and
// returns the number of bytes to serve.
func CheckRange(size, offset, limit int64) (int64, error) {
	if offset < 0 || offset > size {
		return 0, fmt.Errorf("%w: offset %d outside blob of %d bytes", ErrInvalid, offset, size)
	}
	if limit < 0 {
		return 0, fmt.Errorf("%w: negative limit %d", ErrInvalid, limit)
	}
	n := size - offset
	if limit > 0 && limit < n {
		n = limit
	}
	return n, nil
}
