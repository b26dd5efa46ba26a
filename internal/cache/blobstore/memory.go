package blobstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
)

// Memory is a Store that keeps blobs in memory, per org: the working fake
// of the decorators' tests. Like every backend it checks nothing of what
// Verifying checks.
type Memory struct {
	mu    sync.RWMutex
	blobs map[memKey][]byte
}

type memKey struct {
	org  string
	kind Kind
	hash Hash
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{blobs: make(map[memKey][]byte)} }

func keyOf(ref Ref) memKey { return memKey{org: ref.Org, kind: ref.Kind, hash: ref.Digest.Hash} }

// Get implements Store.
func (m *Memory) Get(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if ref.Kind == KindCAS && ref.Digest.IsEmpty() {
		if _, err := CheckRange(0, offset, limit); err != nil {
			return nil, 0, err
		}
		return io.NopCloser(bytes.NewReader(nil)), 0, nil
	}
	m.mu.RLock()
	b, ok := m.blobs[keyOf(ref)]
	m.mu.RUnlock()
	if !ok {
		return nil, 0, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	n, err := CheckRange(int64(len(b)), offset, limit)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(b[offset : offset+n])), int64(len(b)), nil
}

// FindMissing implements Store.
func (m *Memory) FindMissing(ctx context.Context, org string, kind Kind, ds []Digest) ([]Digest, error) {
	var missing []Digest
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, d := range ds {
		if kind == KindCAS && d.IsEmpty() {
			continue
		}
		if _, ok := m.blobs[memKey{org: org, kind: kind, hash: d.Hash}]; !ok {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// NewWriter implements Store.
func (m *Memory) NewWriter(ctx context.Context, ref Ref, size int64) (Writer, error) {
	if size < 0 {
		return nil, fmt.Errorf("%w: negative size", ErrInvalid)
	}
	return &memWriter{m: m, ref: ref, size: size}, nil
}

type memWriter struct {
	m    *Memory
	ref  Ref
	size int64
	buf  bytes.Buffer
	done bool
}

func (w *memWriter) Write(p []byte) (int, error) {
	if int64(w.buf.Len()+len(p)) > w.size {
		return 0, fmt.Errorf("%w: %s: more than %d bytes", ErrInvalid, w.ref, w.size)
	}
	return w.buf.Write(p)
}

func (w *memWriter) Commit(ctx context.Context) error {
	if w.done {
		return fmt.Errorf("commit %s: writer closed", w.ref)
	}
	if int64(w.buf.Len()) != w.size {
		return fmt.Errorf("%w: %s: got %d bytes, want %d", ErrInvalid, w.ref, w.buf.Len(), w.size)
	}
	w.done = true
	w.m.mu.Lock()
	w.m.blobs[keyOf(w.ref)] = bytes.Clone(w.buf.Bytes())
	w.m.mu.Unlock()
	return nil
}

func (w *memWriter) Close() error { w.done = true; return nil }

// Delete removes a blob; tests use it to simulate loss in a tier.
func (m *Memory) Delete(ref Ref) {
	m.mu.Lock()
	delete(m.blobs, keyOf(ref))
	m.mu.Unlock()
}

// Len returns the number of blobs held.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.blobs)
}
