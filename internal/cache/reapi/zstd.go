package reapi

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// zstd, as the REAPI defines it: reads of compressed-blobs/zstd/… are
// served from the bytes the store keeps compressed, or compressed as they
// are read when it keeps the blob as it came (blobstore.GetZstd); writes
// are stored as they come when the store keeps blobs compressed, and
// decompressed as they arrive otherwise (blobstore.NewZstdWriter); either
// way what they decompress to is verified against the uncompressed digest
// like any write.

// readCompressed serves ref compressed with zstd; offset and limit count
// compressed bytes.
func (s *Server) readCompressed(ctx context.Context, ref blobstore.Ref, offset, limit int64, stream bytestream.ByteStream_ReadServer) error {
	rc, _, err := blobstore.GetZstd(ctx, s.store, ref, offset, limit)
	if err != nil {
		if errors.Is(err, blobstore.ErrInvalid) {
			return status.Error(codes.OutOfRange, err.Error())
		}
		return s.status(ctx, err)
	}
	defer rc.Close()
	bp := s.chunks.Get().(*[]byte)
	defer s.chunks.Put(bp)
	for {
		n, err := io.ReadFull(rc, *bp)
		if n > 0 {
			if serr := stream.Send(&bytestream.ReadResponse{Data: (*bp)[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if errors.Is(err, blobstore.ErrInvalid) {
			return status.Error(codes.OutOfRange, err.Error())
		}
		if err != nil {
			return s.status(ctx, fmt.Errorf("read %s: %w", ref.Digest, err))
		}
	}
}

// writeCompressed receives a zstd-compressed upload, starting with req.
// Compressed uploads are not resumable: one must come in one stream from
// offset 0. A blob the org already has completes at once, with
// committed_size -1 as the API says.
func (s *Server) writeCompressed(ctx context.Context, req *bytestream.WriteRequest, res Resource, ref blobstore.Ref, stream bytestream.ByteStream_WriteServer) error {
	defer func() { release(req) }()
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
	w, err := blobstore.NewZstdWriter(ctx, s.store, ref)
	if err != nil {
		return s.status(ctx, err)
	}
	defer w.Close()
	received := int64(0)
	for {
		if req.GetWriteOffset() != received {
			return status.Errorf(codes.InvalidArgument, "write offset %d, but %d compressed bytes were received", req.GetWriteOffset(), received)
		}
		if _, err := w.Write(req.GetData()); err != nil {
			return s.status(ctx, err)
		}
		received += int64(len(req.GetData()))
		if req.GetFinishWrite() {
			if err := w.Commit(ctx); err != nil {
				return s.status(ctx, err)
			}
			return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: received})
		}
		release(req)
		req, err = stream.Recv()
		if err != nil {
			req = nil
			if err == io.EOF {
				return status.Errorf(codes.InvalidArgument, "compressed upload ended without finish_write")
			}
			return err
		}
	}
}

// putCompressed stores a batch request's zstd data of CAS blob ref.
func (s *Server) putCompressed(ctx context.Context, ref blobstore.Ref, data []byte) error {
	w, err := blobstore.NewZstdWriter(ctx, s.store, ref)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit(ctx)
}

// readCompressedBlob returns CAS blob ref compressed with zstd, for a
// batch response.
func (s *Server) readCompressedBlob(ctx context.Context, ref blobstore.Ref) ([]byte, error) {
	r, n, err := blobstore.GetZstd(ctx, s.store, ref, 0, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if n >= 0 {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("read %s: %w", ref.Digest, err)
		}
		return b, nil
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref.Digest, err)
	}
	return b, nil
}
