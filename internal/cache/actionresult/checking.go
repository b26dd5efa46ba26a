package actionresult

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// MaxSize bounds an encoded action result.
const MaxSize = 16 << 20

// Checking is the action cache's checks, made once in front of the store
// for every protocol: an action result written must parse, with every
// digest in it valid, and fit MaxSize; an action result is served only when
// it parses and every blob it references (output files, the files of its
// output trees, stdout and stderr) is in the org's CAS, which the check
// refreshes so that the outputs outlive the entry's next use. A result
// that fails either is a miss. Other kinds pass through unchanged.
type Checking struct {
	next blobstore.Store
	log  *slog.Logger
}

var _ blobstore.Store = (*Checking)(nil)

// NewChecking wraps next.
func NewChecking(next blobstore.Store, log *slog.Logger) *Checking {
	return &Checking{next: next, log: log}
}

// Get implements blobstore.Store.
func (c *Checking) Get(ctx context.Context, ref blobstore.Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if ref.Kind != blobstore.KindAC {
		return c.next.Get(ctx, ref, offset, limit)
	}
	b, err := blobstore.GetBytes(ctx, c.next, ref, MaxSize)
	if err != nil {
		return nil, 0, err
	}
	ar, err := Parse(b)
	if err != nil {
		c.log.WarnContext(ctx, "stored action result does not parse; treated as a miss", "org", ref.Org, "err", err)
		return nil, 0, fmt.Errorf("%s: %w", ref, blobstore.ErrNotFound)
	}
	ok, err := complete(ctx, c.next, ref.Org, ar)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, fmt.Errorf("%s: some outputs are gone: %w", ref, blobstore.ErrNotFound)
	}
	n, err := blobstore.CheckRange(int64(len(b)), offset, limit)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(b[offset : offset+n])), int64(len(b)), nil
}

// FindMissing implements blobstore.Store.
func (c *Checking) FindMissing(ctx context.Context, org string, kind blobstore.Kind, ds []blobstore.Digest) ([]blobstore.Digest, error) {
	return c.next.FindMissing(ctx, org, kind, ds)
}

// NewWriter implements blobstore.Store.
func (c *Checking) NewWriter(ctx context.Context, ref blobstore.Ref, size int64) (blobstore.Writer, error) {
	if ref.Kind != blobstore.KindAC {
		return c.next.NewWriter(ctx, ref, size)
	}
	if size > MaxSize {
		return nil, fmt.Errorf("%w: action result of %d bytes, at most %d", blobstore.ErrTooLarge, size, MaxSize)
	}
	w, err := c.next.NewWriter(ctx, ref, size)
	if err != nil {
		return nil, err
	}
	return &checkingWriter{next: w, buf: make([]byte, 0, max(size, 0))}, nil
}

// checkingWriter keeps a copy of the action result written through it and
// commits only one that parses.
type checkingWriter struct {
	next blobstore.Writer
	buf  []byte
}

func (w *checkingWriter) Write(p []byte) (int, error) {
	n, err := w.next.Write(p)
	w.buf = append(w.buf, p[:n]...)
	return n, err
}

func (w *checkingWriter) Commit(ctx context.Context) error {
	if _, err := Parse(w.buf); err != nil {
		return err
	}
	return w.next.Commit(ctx)
}

func (w *checkingWriter) Close() error { return w.next.Close() }

var _ blobstore.ZstdStore = (*Checking)(nil)

// GetZstd implements blobstore.ZstdStore (CAS blobs only: action results
// are never compressed).
func (c *Checking) GetZstd(ctx context.Context, ref blobstore.Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	zs, ok := c.next.(blobstore.ZstdStore)
	if !ok || ref.Kind != blobstore.KindCAS {
		return nil, 0, blobstore.ErrNotZstd
	}
	return zs.GetZstd(ctx, ref, offset, limit)
}

// NewZstdWriter implements blobstore.ZstdStore (CAS blobs only).
func (c *Checking) NewZstdWriter(ctx context.Context, ref blobstore.Ref) (blobstore.Writer, error) {
	zs, ok := c.next.(blobstore.ZstdStore)
	if !ok || ref.Kind != blobstore.KindCAS {
		return nil, blobstore.ErrNotZstd
	}
	return zs.NewZstdWriter(ctx, ref)
}
