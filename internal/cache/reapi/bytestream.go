package reapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Read implements bytestream.ByteStreamServer.
func (s *Server) Read(req *bytestream.ReadRequest, stream bytestream.ByteStream_ReadServer) error {
	ctx := stream.Context()
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return s.status(ctx, err)
	}
	res, err := ParseReadResource(req.GetResourceName())
	if err != nil {
		return s.status(ctx, err)
	}
	if req.GetReadOffset() < 0 || req.GetReadLimit() < 0 {
		return s.status(ctx, fmt.Errorf("%w: negative read offset or limit", blobstore.ErrInvalid))
	}
	if res.Compressed {
		ref := blobstore.Ref{Org: c.Org(), Kind: blobstore.KindCAS, Digest: res.Digest}
		return s.readCompressed(ctx, ref, req.GetReadOffset(), req.GetReadLimit(), stream)
	}
	r, size, err := s.store.Get(ctx, blobstore.Ref{Org: c.Org(), Kind: blobstore.KindCAS, Digest: res.Digest}, req.GetReadOffset(), req.GetReadLimit())
	if err != nil {
		if errors.Is(err, blobstore.ErrInvalid) {
			return status.Error(codes.OutOfRange, err.Error())
		}
		return s.status(ctx, err)
	}
	defer r.Close()
	// A buffer the size of what is served, up to a chunk: most blobs are
	// small, and a chunk-sized allocation per read costs more than the read.
	n := size - req.GetReadOffset()
	if l := req.GetReadLimit(); l > 0 && l < n {
		n = l
	}
	var buf []byte
	if n >= int64(s.opts.ReadChunkSize) {
		bp := s.chunks.Get().(*[]byte)
		defer s.chunks.Put(bp)
		buf = *bp
	} else {
		buf = make([]byte, max(n, 1))
	}
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if serr := stream.Send(&bytestream.ReadResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return s.status(ctx, fmt.Errorf("read %s: %w", res.Digest, err))
		}
	}
}

// Write implements bytestream.ByteStreamServer. Writes are resumable: a
// stream that breaks leaves its upload for QueryWriteStatus and a later
// stream that continues at the committed offset. A blob the org already has
// completes at once.
func (s *Server) Write(stream bytestream.ByteStream_WriteServer) error {
	ctx := stream.Context()
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return s.status(ctx, err)
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	// Each request's data may live in a buffer of the codec's: give it
	// back once the chunk is written (or the stream ends).
	defer func() { release(req) }()
	res, err := ParseWriteResource(req.GetResourceName())
	if err != nil {
		return s.status(ctx, err)
	}
	ref := blobstore.Ref{Org: c.Org(), Kind: blobstore.KindCAS, Digest: res.Digest}
	if res.Compressed {
		r := req
		req = nil // writeCompressed releases it
		return s.writeCompressed(ctx, r, res, ref, stream)
	}
	missing, err := s.store.FindMissing(ctx, ref.Org, ref.Kind, []blobstore.Digest{ref.Digest})
	if err != nil {
		return s.status(ctx, err)
	}
	if len(missing) == 0 {
		return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: res.Digest.Size})
	}
	key := uploadKey{org: c.Org(), resource: req.GetResourceName()}
	up, ok := s.uploads.acquire(key)
	if !ok {
		return status.Errorf(codes.Aborted, "another stream is writing %s", req.GetResourceName())
	}
	if up == nil || req.GetWriteOffset() == 0 {
		if up != nil {
			up.w.Close()
			s.uploads.remove(up)
		}
		w, err := s.store.NewWriter(ctx, ref, res.Digest.Size)
		if err != nil {
			return s.status(ctx, err)
		}
		up = &upload{key: key, w: w}
		s.uploads.add(up)
	}
	done := false
	defer func() {
		if done {
			return
		}
		s.uploads.release(up)
	}()
	for {
		if req.GetWriteOffset() != up.offset {
			return status.Errorf(codes.InvalidArgument, "write offset %d, but %d bytes are committed", req.GetWriteOffset(), up.offset)
		}
		if up.offset+int64(len(req.GetData())) > res.Digest.Size {
			done = true
			s.uploads.remove(up)
			up.w.Close()
			return status.Errorf(codes.InvalidArgument, "more than the %d bytes of %s", res.Digest.Size, res.Digest)
		}
		if _, err := up.w.Write(req.GetData()); err != nil {
			done = true
			s.uploads.remove(up)
			up.w.Close()
			return s.status(ctx, err)
		}
		up.offset += int64(len(req.GetData()))
		if req.GetFinishWrite() {
			done = true
			s.uploads.remove(up)
			err := up.w.Commit(ctx)
			up.w.Close()
			if err != nil {
				return s.status(ctx, err)
			}
			return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: up.offset})
		}
		release(req)
		req, err = stream.Recv()
		if err == io.EOF {
			// Closed without finish_write: keep the upload for a later
			// stream to resume, and say how far it got.
			return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: up.offset})
		}
		if err != nil {
			return err
		}
		if n := req.GetResourceName(); n != "" && n != key.resource {
			return status.Errorf(codes.InvalidArgument, "resource name changed within a write")
		}
	}
}

// QueryWriteStatus implements bytestream.ByteStreamServer.
func (s *Server) QueryWriteStatus(ctx context.Context, req *bytestream.QueryWriteStatusRequest) (*bytestream.QueryWriteStatusResponse, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	res, err := ParseWriteResource(req.GetResourceName())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	missing, err := s.store.FindMissing(ctx, c.Org(), blobstore.KindCAS, []blobstore.Digest{res.Digest})
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if len(missing) == 0 {
		return &bytestream.QueryWriteStatusResponse{CommittedSize: res.Digest.Size, Complete: true}, nil
	}
	off, _ := s.uploads.offset(uploadKey{org: c.Org(), resource: req.GetResourceName()})
	return &bytestream.QueryWriteStatusResponse{CommittedSize: off}, nil
}

// SweepUploads abandons resumable uploads idle for longer than idle.
func (s *Server) SweepUploads(idle time.Duration) int { return s.uploads.sweep(time.Now().Add(-idle)) }
