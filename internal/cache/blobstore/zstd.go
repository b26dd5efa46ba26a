package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// ZstdStore is a Store that may keep CAS blobs compressed with zstd, so
// that a client asking for zstd (REAPI's compressed-blobs/zstd) gets the
// stored bytes without a compression, and a client sending zstd has its
// bytes stored as they came. Use GetZstd and NewZstdWriter, which fall
// back to compressing or decompressing in passing for any Store.
type ZstdStore interface {
	Store
	// GetZstd opens CAS blob ref as the zstd stream the store holds, from
	// offset, at most limit bytes (limit <= 0: to the end), both counted
	// in compressed bytes; it returns the stream's length. A blob the
	// store holds uncompressed is ErrNotZstd.
	GetZstd(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error)
	// NewZstdWriter starts writing CAS blob ref from its zstd-compressed
	// bytes, which are kept as they are. The caller verifies that they
	// decompress to the digest's content (Verifying does). A store that
	// does not keep this blob compressed says ErrNotZstd.
	NewZstdWriter(ctx context.Context, ref Ref) (Writer, error)
}

// ErrNotZstd means a ZstdStore does not hold (or will not take) that blob
// compressed; the caller compresses or decompresses in passing instead.
var ErrNotZstd = errors.New("not stored compressed")

// Pooled encoders and decoders: making one costs more than compressing a
// small blob. Encoders write at the fastest level with a content checksum
// (zstd's default), decoders verify checksums and refuse windows past
// 64 MiB.
var (
	encoders = sync.Pool{New: func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
		return e
	}}
	decoders = sync.Pool{New: func() any {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		return d
	}}
	// compressions counts the encoder uses (tests check that a read of a
	// blob stored compressed uses none).
	compressions atomic.Int64
)

// AcquireEncoder returns a pooled zstd encoder writing to w; give it back
// with ReleaseEncoder.
func AcquireEncoder(w io.Writer) *zstd.Encoder {
	compressions.Add(1)
	e := encoders.Get().(*zstd.Encoder)
	e.Reset(w)
	return e
}

// ReleaseEncoder returns e to the pool.
func ReleaseEncoder(e *zstd.Encoder) {
	e.Reset(nil)
	encoders.Put(e)
}

// CompressZstd appends the zstd encoding of src (one frame, with the
// content size and checksum) to dst.
func CompressZstd(dst, src []byte) []byte {
	e := AcquireEncoder(nil)
	defer ReleaseEncoder(e)
	return e.EncodeAll(src, dst)
}

// Compressions returns how many times an encoder was taken from the pool
// since the process started.
func Compressions() int64 { return compressions.Load() }

func acquireDecoder(r io.Reader) (*zstd.Decoder, error) {
	d := decoders.Get().(*zstd.Decoder)
	if err := d.Reset(r); err != nil {
		releaseDecoder(d)
		return nil, err
	}
	return d, nil
}

func releaseDecoder(d *zstd.Decoder) {
	d.Reset(nil)
	decoders.Put(d)
}

var errAborted = errors.New("abandoned")

// compressWhole is the largest blob stored plain that GetZstd compresses
// in one piece rather than streamed.
const compressWhole = 1 << 20

// GetZstd opens CAS blob ref of s compressed with zstd: the stored bytes
// when s keeps it compressed, otherwise its bytes compressed as they are
// read. offset and limit count compressed bytes; the size is the
// compressed length, or -1 when it is not known in advance.
func GetZstd(ctx context.Context, s Store, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if zs, ok := s.(ZstdStore); ok {
		r, n, err := zs.GetZstd(ctx, ref, offset, limit)
		if !errors.Is(err, ErrNotZstd) {
			return r, n, err
		}
	}
	if offset < 0 || limit < 0 {
		return nil, 0, fmt.Errorf("%w: %s: negative offset %d or limit %d", ErrInvalid, ref, offset, limit)
	}
	rc, size, err := s.Get(ctx, ref, 0, 0)
	if err != nil {
		return nil, 0, err
	}
	if size <= compressWhole {
		// Small (most blobs stored plain are): compress it in one call,
		// without a goroutine and a pipe.
		defer rc.Close()
		b := make([]byte, size)
		if _, err := io.ReadFull(rc, b); err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", ref, err)
		}
		z := CompressZstd(nil, b)
		n, err := CheckRange(int64(len(z)), offset, limit)
		if err != nil {
			return nil, 0, err
		}
		return io.NopCloser(bytes.NewReader(z[offset : offset+n])), int64(len(z)), nil
	}
	pr, pw := io.Pipe()
	cr := &compressingReader{pr: pr, rc: rc, done: make(chan struct{}), skip: offset, left: limit}
	go func() {
		defer close(cr.done)
		enc := AcquireEncoder(pw)
		_, err := io.Copy(enc, rc)
		if cerr := enc.Close(); err == nil {
			err = cerr
		}
		ReleaseEncoder(enc)
		pw.CloseWithError(err)
	}()
	return cr, -1, nil
}

// compressingReader serves a blob compressed by a goroutine as it reads.
type compressingReader struct {
	pr   *io.PipeReader
	rc   io.ReadCloser
	done chan struct{}
	skip int64 // compressed bytes still to skip (offset)
	left int64 // compressed bytes still to serve (0: to the end)
	seen int64
}

func (c *compressingReader) Read(p []byte) (int, error) {
	for c.skip > 0 {
		n, err := io.CopyN(io.Discard, c.pr, c.skip)
		c.skip -= n
		c.seen += n
		if err == io.EOF {
			return 0, fmt.Errorf("%w: offset past the %d compressed bytes", ErrInvalid, c.seen)
		}
		if err != nil {
			return 0, err
		}
	}
	if c.left < 0 {
		return 0, io.EOF
	}
	if c.left > 0 && int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.pr.Read(p)
	if c.left > 0 {
		if c.left -= int64(n); c.left == 0 {
			c.left = -1
		}
	}
	return n, err
}

func (c *compressingReader) Close() error {
	c.pr.CloseWithError(errAborted)
	<-c.done
	return c.rc.Close()
}

// NewZstdWriter starts writing CAS blob ref of s from its zstd-compressed
// bytes: kept as they are when s keeps compressed blobs, decompressed as
// they arrive otherwise. Either way, Commit fails with ErrInvalid unless
// they decompress to exactly the digest's content.
func NewZstdWriter(ctx context.Context, s Store, ref Ref) (Writer, error) {
	if zs, ok := s.(ZstdStore); ok {
		w, err := zs.NewZstdWriter(ctx, ref)
		if !errors.Is(err, ErrNotZstd) {
			return w, err
		}
	}
	w, err := s.NewWriter(ctx, ref, ref.Digest.Size)
	if err != nil {
		return nil, err
	}
	return newZstdDecoding(nil, w, ref), nil
}

// zstdDecoding takes a zstd stream: it passes the compressed bytes to
// stored (when set) and the decompressed ones to plain, from a goroutine
// that decodes them as they arrive.
type zstdDecoding struct {
	stored  Writer // nil: only plain
	plain   io.Writer
	commit  Writer // what Commit commits
	pw      *io.PipeWriter
	decoded chan error
	done    bool
}

// newZstdDecoding decodes into plain; it commits stored, or plain (a Writer
// then) when stored is nil.
func newZstdDecoding(stored Writer, plain io.Writer, ref Ref) *zstdDecoding {
	pr, pw := io.Pipe()
	z := &zstdDecoding{stored: stored, plain: plain, pw: pw, decoded: make(chan error, 1)}
	z.commit = stored
	if stored == nil {
		z.commit = plain.(Writer)
	}
	size := ref.Digest.Size
	go func() {
		var n int64
		dec, err := acquireDecoder(pr)
		if err == nil {
			n, err = io.Copy(plain, io.LimitReader(dec, size+1))
			releaseDecoder(dec)
			if err == nil && n != size {
				err = fmt.Errorf("%w: %s: decompresses to %d bytes or more", ErrInvalid, ref, n)
			}
		}
		if err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, errAborted) {
			err = fmt.Errorf("%w: %s: zstd: %v", ErrInvalid, ref, err)
		}
		pr.CloseWithError(err)
		z.decoded <- err
	}()
	return z
}

func (z *zstdDecoding) Write(p []byte) (int, error) {
	if z.done {
		return 0, errors.New("write after close")
	}
	if z.stored != nil {
		if n, err := z.stored.Write(p); err != nil {
			return n, err
		}
	}
	if _, err := z.pw.Write(p); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			err = fmt.Errorf("%w: data after the end of the compressed stream", ErrInvalid)
		}
		return 0, err
	}
	return len(p), nil
}

// finish ends the input and waits for the decoder's verdict.
func (z *zstdDecoding) finish() error {
	if z.done {
		return errors.New("writer closed")
	}
	z.done = true
	z.pw.Close()
	return <-z.decoded
}

func (z *zstdDecoding) Commit(ctx context.Context) error {
	if err := z.finish(); err != nil {
		z.commit.Close()
		return err
	}
	if c, ok := z.plain.(Writer); ok && z.stored != nil {
		// Verifying's check of the decompressed content.
		if err := c.Commit(ctx); err != nil {
			z.commit.Close()
			return err
		}
	}
	return z.commit.Commit(ctx)
}

func (z *zstdDecoding) Close() error {
	if !z.done {
		z.done = true
		z.pw.CloseWithError(errAborted)
		<-z.decoded
	}
	return z.commit.Close()
}

// discardWriter is a Writer that keeps nothing (the decompressed side of a
// verified compressed write, whose check is verifyingWriter's).
type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error)  { return len(p), nil }
func (discardWriter) Commit(context.Context) error { return nil }
func (discardWriter) Close() error                 { return nil }

// NewZstdReader serves [offset, offset+n) of CAS blob d from its zstd
// stream src, decompressing as it goes. Every byte of the blob is hashed,
// and the last byte served is held back until the whole blob has been
// decoded and checked against d: stored data that is corrupt ends the read
// with an error (wrapping ErrCorrupt), never with wrong bytes. Close
// closes src.
func NewZstdReader(src io.ReadCloser, d Digest, offset, n int64) (io.ReadCloser, error) {
	dec, err := acquireDecoder(src)
	if err != nil {
		src.Close()
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &zstdReader{src: src, dec: dec, d: d, skip: offset, left: n, h: sha256.New()}, nil
}

// ErrCorrupt means stored data failed its check: what it decodes to does
// not match its digest.
var ErrCorrupt = errors.New("stored blob is corrupt")

type zstdReader struct {
	src  io.ReadCloser
	dec  *zstd.Decoder
	d    Digest
	h    hash.Hash
	n    int64 // decompressed bytes so far
	skip int64
	left int64
	err  error
}

func (z *zstdReader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	for z.skip > 0 {
		var buf [4096]byte
		k, err := z.fill(buf[:min(int64(len(buf)), z.skip)])
		z.skip -= int64(k)
		if err != nil {
			return 0, z.fail(err)
		}
	}
	if z.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.left {
		p = p[:z.left]
	}
	k, err := z.fill(p)
	if err != nil {
		return 0, z.fail(err)
	}
	z.left -= int64(k)
	if z.left == 0 {
		// The last byte served: decode the rest of the blob and check all
		// of it before handing these bytes over.
		if err := z.verify(); err != nil {
			return 0, z.fail(err)
		}
	}
	return k, nil
}

// fill decodes into all of p (the blob has at least that much left).
func (z *zstdReader) fill(p []byte) (int, error) {
	k, err := io.ReadFull(z.dec, p)
	z.h.Write(p[:k])
	z.n += int64(k)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("decodes to %d bytes, want %d", z.n, z.d.Size)
	}
	return k, err
}

func (z *zstdReader) verify() error {
	if rest, err := io.Copy(z.h, z.dec); err != nil {
		return err
	} else {
		z.n += rest
	}
	if z.n != z.d.Size {
		return fmt.Errorf("decodes to %d bytes, want %d", z.n, z.d.Size)
	}
	var got Hash
	z.h.Sum(got[:0])
	if got != z.d.Hash {
		return fmt.Errorf("decodes to content hashing to %s", got)
	}
	z.err = io.EOF
	return nil
}

func (z *zstdReader) fail(err error) error {
	if errors.Is(err, ErrCorrupt) {
		z.err = err
	} else {
		z.err = fmt.Errorf("%w: %s: %v", ErrCorrupt, z.d, err)
	}
	return z.err
}

func (z *zstdReader) Close() error {
	if z.dec != nil {
		releaseDecoder(z.dec)
		z.dec = nil
	}
	return z.src.Close()
}

// Decoders for DecodeZstdBlob, which never decode past the room they are
// given (a damaged frame cannot make them allocate more).
var cappedDecoders = sync.Pool{New: func() any {
	d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20), zstd.WithDecodeAllCapLimit(true))
	return d
}}

// DecodeZstdBlob reads all of src, the stored zstd stream (stored bytes)
// of CAS blob d, decodes it at once and checks what it decodes to against
// d before serving [offset, offset+n) of it: for small blobs, one decode
// beats a stream's many small reads. Stored data that is corrupt (short,
// undecodable, other content) is ErrCorrupt. The buffers are pooled and
// go back on Close.
func DecodeZstdBlob(src io.Reader, stored int64, d Digest, offset, n int64) (io.ReadCloser, error) {
	sb := smallBlobs.Get().(*smallBlob)
	sb.comp = grow(sb.comp, stored)
	if _, err := io.ReadFull(src, sb.comp); err != nil {
		sb.Close()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: %s: shorter than stored", ErrCorrupt, d)
		}
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	dec := cappedDecoders.Get().(*zstd.Decoder)
	out, err := dec.DecodeAll(sb.comp, grow(sb.out, d.Size+1)[:0])
	cappedDecoders.Put(dec)
	sb.out = out
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %s: %v", ErrCorrupt, d, err)
	case int64(len(out)) != d.Size:
		err = fmt.Errorf("%w: %s: decodes to %d bytes", ErrCorrupt, d, len(out))
	case Hash(sha256.Sum256(out)) != d.Hash:
		err = fmt.Errorf("%w: %s: decodes to other content", ErrCorrupt, d)
	}
	if err != nil {
		sb.Close()
		return nil, err
	}
	sb.r.Reset(out[offset : offset+n])
	return sb, nil
}

// smallBlob serves a blob DecodeZstdBlob decoded.
type smallBlob struct {
	comp, out []byte
	r         bytes.Reader
}

var smallBlobs = sync.Pool{New: func() any { return new(smallBlob) }}

func (b *smallBlob) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *smallBlob) Close() error {
	b.r.Reset(nil)
	smallBlobs.Put(b)
	return nil
}

// grow returns b resized to n bytes, reallocated if its capacity is short.
func grow(b []byte, n int64) []byte {
	if int64(cap(b)) < n {
		return make([]byte, n)
	}
	return b[:n]
}
