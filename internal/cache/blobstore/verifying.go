package blobstore

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// Verifying is where a store's input is checked, once, for every backend
// it wraps (the composition root wraps each backend in one): refs (an org,
// a known kind), sizes and ranges, and written content (the exact size,
// and for KindCAS the SHA-256 of the digest) before the wrapped writer may
// commit. Backends behind it check nothing of that themselves; they only
// enforce their own limits (quotas, the largest blob).
type Verifying struct {
	next Store
}

var _ Store = (*Verifying)(nil)

// NewVerifying wraps next.
func NewVerifying(next Store) *Verifying { return &Verifying{next: next} }

// CheckRef validates a ref's org and kind.
func CheckRef(ref Ref) error {
	if ref.Org == "" {
		return fmt.Errorf("%w: empty org", ErrInvalid)
	}
	if !ref.Kind.Valid() {
		return fmt.Errorf("%w: unknown kind %d", ErrInvalid, ref.Kind)
	}
	return nil
}

// Get implements Store.
func (v *Verifying) Get(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if err := CheckRef(ref); err != nil {
		return nil, 0, err
	}
	if offset < 0 || limit < 0 {
		return nil, 0, fmt.Errorf("%w: %s: negative offset %d or limit %d", ErrInvalid, ref, offset, limit)
	}
	return v.next.Get(ctx, ref, offset, limit)
}

// FindMissing implements Store.
func (v *Verifying) FindMissing(ctx context.Context, org string, kind Kind, ds []Digest) ([]Digest, error) {
	if err := CheckRef(Ref{Org: org, Kind: kind}); err != nil {
		return nil, err
	}
	return v.next.FindMissing(ctx, org, kind, ds)
}

// NewWriter implements Store.
func (v *Verifying) NewWriter(ctx context.Context, ref Ref, size int64) (Writer, error) {
	if err := CheckRef(ref); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("%w: %s: negative size %d", ErrInvalid, ref, size)
	}
	if ref.Kind == KindCAS && size != ref.Digest.Size {
		return nil, fmt.Errorf("%w: %s: size %d does not match the digest", ErrInvalid, ref, size)
	}
	w, err := v.next.NewWriter(ctx, ref, size)
	if err != nil {
		return nil, err
	}
	vw := &verifyingWriter{next: w, ref: ref, size: size}
	if ref.Kind == KindCAS {
		vw.h = sha256.New()
	}
	return vw, nil
}

type verifyingWriter struct {
	next Writer
	ref  Ref
	size int64
	n    int64
	h    hash.Hash
}

func (w *verifyingWriter) Write(p []byte) (int, error) {
	if w.n+int64(len(p)) > w.size {
		return 0, fmt.Errorf("%w: %s: more than %d bytes", ErrInvalid, w.ref, w.size)
	}
	n, err := w.next.Write(p)
	if w.h != nil {
		w.h.Write(p[:n])
	}
	w.n += int64(n)
	return n, err
}

func (w *verifyingWriter) Commit(ctx context.Context) error {
	if w.n != w.size {
		return fmt.Errorf("%w: %s: got %d bytes, want %d", ErrInvalid, w.ref, w.n, w.size)
	}
	if w.h != nil {
		var got Hash
		w.h.Sum(got[:0])
		if got != w.ref.Digest.Hash {
			return fmt.Errorf("%w: %s: content hashes to %s", ErrInvalid, w.ref, got)
		}
	}
	return w.next.Commit(ctx)
}

func (w *verifyingWriter) Close() error { return w.next.Close() }

var _ ZstdStore = (*Verifying)(nil)

// GetZstd implements ZstdStore: what the wrapped store keeps compressed,
// or ErrNotZstd.
func (v *Verifying) GetZstd(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if err := CheckRef(ref); err != nil {
		return nil, 0, err
	}
	zs, ok := v.next.(ZstdStore)
	if ref.Kind != KindCAS || !ok {
		return nil, 0, ErrNotZstd
	}
	if offset < 0 || limit < 0 {
		return nil, 0, fmt.Errorf("%w: %s: negative offset %d or limit %d", ErrInvalid, ref, offset, limit)
	}
	return zs.GetZstd(ctx, ref, offset, limit)
}

// NewZstdWriter implements ZstdStore. The compressed bytes go to the
// wrapped store as they come, and through a decoder to the same checks as
// any write (the exact size, the SHA-256): Commit commits them only when
// they decompress to the digest's content, and a stream that is not zstd
// or runs past the blob's end is ErrInvalid.
func (v *Verifying) NewZstdWriter(ctx context.Context, ref Ref) (Writer, error) {
	if err := CheckRef(ref); err != nil {
		return nil, err
	}
	zs, ok := v.next.(ZstdStore)
	if ref.Kind != KindCAS || !ok {
		return nil, ErrNotZstd
	}
	if ref.Digest.Size < 0 {
		return nil, fmt.Errorf("%w: %s: negative size", ErrInvalid, ref)
	}
	w, err := zs.NewZstdWriter(ctx, ref)
	if err != nil {
		return nil, err
	}
	check := &verifyingWriter{next: discardWriter{}, ref: ref, size: ref.Digest.Size, h: sha256.New()}
	return newZstdDecoding(w, check, ref), nil
}
