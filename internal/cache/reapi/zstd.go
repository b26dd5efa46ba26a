package reapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Blobs are stored uncompressed; zstd is a transfer encoding here: reads
// of compressed-blobs/zstd/… are compressed as they are served, writes
// decompressed as they arrive (and verified against the uncompressed
// digest like any write). Encoders and decoders are pooled: making one
// costs more than compressing a small blob.
var (
	encoders = sync.Pool{New: func() any {
		e, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
		return e
	}}
	decoders = sync.Pool{New: func() any {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		return d
	}}
)

var errAborted = errors.New("read abandoned")

// readCompressed serves ref compressed with zstd; offset and limit count
// compressed bytes.
func (s *Server) readCompressed(ctx context.Context, ref blobstore.Ref, offset, limit int64, stream bytestream.ByteStream_ReadServer) error {
	rc, _, err := s.store.Get(ctx, ref, 0, 0)
	if err != nil {
		return s.status(ctx, err)
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc := encoders.Get().(*zstd.Encoder)
		enc.Reset(pw)
		_, err := io.Copy(enc, rc)
		if cerr := enc.Close(); err == nil {
			err = cerr
		}
		enc.Reset(nil)
		encoders.Put(enc)
		pw.CloseWithError(err)
	}()
	defer func() {
		pr.CloseWithError(errAborted)
		<-done
	}()
	if offset > 0 {
		if n, err := io.CopyN(io.Discard, pr, offset); err != nil {
			if n < offset && (err == io.EOF) {
				return status.Errorf(codes.OutOfRange, "read offset %d past the %d compressed bytes of %s", offset, n, ref.Digest)
			}
			return s.status(ctx, fmt.Errorf("compress %s: %w", ref.Digest, err))
		}
	}
	var src io.Reader = pr
	if limit > 0 {
		src = io.LimitReader(pr, limit)
	}
	bp := s.chunks.Get().(*[]byte)
	defer s.chunks.Put(bp)
	for {
		n, err := io.ReadFull(src, *bp)
		if n > 0 {
			if serr := stream.Send(&bytestream.ReadResponse{Data: (*bp)[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return s.status(ctx, fmt.Errorf("compress %s: %w", ref.Digest, err))
		}
	}
}

// writeCompressed receives a zstd-compressed upload, starting with req,
// and stores it decompressed. Compressed uploads are not resumable: one
// must come in one stream from offset 0. A blob the org already has
// completes at once, with committed_size -1 as the API says.
func (s *Server) writeCompressed(ctx context.Context, req *bytestream.WriteRequest, res Resource, ref blobstore.Ref, stream bytestream.ByteStream_WriteServer) error {
	missing, err := s.store.FindMissing(ctx, ref.Org, ref.Kind, []blobstore.Digest{ref.Digest})
	if err != nil {
		return s.status(ctx, err)
	}
	if len(missing) == 0 {
		return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: -1})
	}
	if req.GetWriteOffset() != 0 {
		return status.Errorf(codes.InvalidArgument, "compressed uploads are not resumable: write from offset 0")
	}
	w, err := s.store.NewWriter(ctx, ref, res.Digest.Size)
	if err != nil {
		return s.status(ctx, err)
	}
	defer w.Close()
	pr, pw := io.Pipe()
	decoded := make(chan error, 1)
	go func() {
		dec := decoders.Get().(*zstd.Decoder)
		var err error
		if err = dec.Reset(pr); err == nil {
			var n int64
			n, err = io.Copy(w, io.LimitReader(dec, res.Digest.Size+1))
			if err == nil && n != res.Digest.Size {
				err = fmt.Errorf("%w: %s decompresses to %d bytes or more", blobstore.ErrInvalid, res.Digest, n)
			}
		}
		if err != nil && !errors.Is(err, blobstore.ErrInvalid) && !errors.Is(err, errAborted) {
			err = fmt.Errorf("%w: zstd: %v", blobstore.ErrInvalid, err)
		}
		dec.Reset(nil)
		decoders.Put(dec)
		pr.CloseWithError(err)
		decoded <- err
	}()
	received := int64(0)
	for {
		if req.GetWriteOffset() != received {
			release(req)
			pw.CloseWithError(errAborted)
			<-decoded
			return status.Errorf(codes.InvalidArgument, "write offset %d, but %d compressed bytes were received", req.GetWriteOffset(), received)
		}
		_, werr := pw.Write(req.GetData())
		received += int64(len(req.GetData()))
		finish := req.GetFinishWrite()
		release(req)
		if werr != nil || finish {
			pw.Close()
			if err := <-decoded; err != nil {
				return s.status(ctx, err)
			}
			if werr != nil {
				return s.status(ctx, fmt.Errorf("%w: data after the end of the compressed stream", blobstore.ErrInvalid))
			}
			if err := w.Commit(ctx); err != nil {
				return s.status(ctx, err)
			}
			return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: received})
		}
		req, err = stream.Recv()
		if err != nil {
			pw.CloseWithError(errAborted)
			<-decoded
			if err == io.EOF {
				return status.Errorf(codes.InvalidArgument, "compressed upload ended without finish_write")
			}
			return err
		}
	}
}

// decompress decodes a batch request's zstd data of a blob of size bytes.
func decompress(data []byte, size int64) ([]byte, error) {
	dec := decoders.Get().(*zstd.Decoder)
	defer func() { dec.Reset(nil); decoders.Put(dec) }()
	if err := dec.Reset(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", blobstore.ErrInvalid, err)
	}
	out, err := io.ReadAll(io.LimitReader(dec, size+1))
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", blobstore.ErrInvalid, err)
	}
	if int64(len(out)) != size {
		return nil, fmt.Errorf("%w: decompresses to %d bytes, the digest says %d", blobstore.ErrInvalid, len(out), size)
	}
	return out, nil
}

// compress encodes a batch response's data.
func compress(data []byte) []byte {
	enc := encoders.Get().(*zstd.Encoder)
	defer encoders.Put(enc)
	return enc.EncodeAll(data, nil)
}
