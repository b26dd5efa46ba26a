package reapi

import (
	"context"
	"fmt"
	"io"
	"slices"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/actionresult"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// maxFindMissing bounds the digests of one FindMissingBlobs request.
const maxFindMissing = 100_000

// batchParallelism is how many blobs of a batch are written at once, so that
// one group commit makes most of a batch durable.
const batchParallelism = 64

// FindMissingBlobs implements repb.ContentAddressableStorageServer.
func (s *Server) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if len(req.GetBlobDigests()) > maxFindMissing {
		return nil, s.status(ctx, fmt.Errorf("%w: %d digests, at most %d", blobstore.ErrInvalid, len(req.GetBlobDigests()), maxFindMissing))
	}
	ds := make([]blobstore.Digest, len(req.GetBlobDigests()))
	for i, d := range req.GetBlobDigests() {
		if ds[i], err = actionresult.FromProto(d); err != nil {
			return nil, s.status(ctx, err)
		}
	}
	missing, err := s.store.FindMissing(ctx, c.Org(), blobstore.KindCAS, ds)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &repb.FindMissingBlobsResponse{MissingBlobDigests: make([]*repb.Digest, len(missing))}
	for i, d := range missing {
		resp.MissingBlobDigests[i] = actionresult.ToProto(d)
	}
	return resp, nil
}

func rpcStatus(err error) *status.Status {
	if err == nil {
		return &status.Status{}
	}
	return &status.Status{Code: int32(codeOf(err)), Message: err.Error()}
}

// BatchUpdateBlobs implements repb.ContentAddressableStorageServer.
func (s *Server) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	var total int64
	for _, r := range req.GetRequests() {
		total += int64(len(r.GetData()))
		if c := r.GetCompressor(); c != repb.Compressor_IDENTITY && c != repb.Compressor_ZSTD {
			return nil, s.status(ctx, fmt.Errorf("%w: compressor %v not supported", blobstore.ErrInvalid, c))
		}
	}
	if total > s.opts.MaxBatchTotalSize {
		return nil, s.status(ctx, fmt.Errorf("%w: batch of %d bytes, at most %d", blobstore.ErrInvalid, total, s.opts.MaxBatchTotalSize))
	}
	resp := &repb.BatchUpdateBlobsResponse{Responses: make([]*repb.BatchUpdateBlobsResponse_Response, len(req.GetRequests()))}
	var g errgroup.Group
	g.SetLimit(batchParallelism)
	for i, r := range req.GetRequests() {
		g.Go(func() error {
			err := s.putBlob(ctx, c.Org(), r.GetDigest(), r.GetData(), r.GetCompressor() == repb.Compressor_ZSTD)
			if err != nil && codeOf(err) == codes.Internal {
				s.log.ErrorContext(ctx, "batch update blob", "org", c.Org(), "err", err)
			}
			resp.Responses[i] = &repb.BatchUpdateBlobsResponse_Response{Digest: r.GetDigest(), Status: rpcStatus(err)}
			return nil
		})
	}
	g.Wait()
	return resp, nil
}

func (s *Server) putBlob(ctx context.Context, org string, pd *repb.Digest, data []byte, zstd bool) error {
	d, err := actionresult.FromProto(pd)
	if err != nil {
		return err
	}
	ref := blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: d}
	if zstd {
		return s.putCompressed(ctx, ref, data)
	}
	if d.Size != int64(len(data)) {
		return fmt.Errorf("%w: %s: got %d bytes", blobstore.ErrInvalid, d, len(data))
	}
	return blobstore.PutBytes(ctx, s.store, ref, data)
}

// BatchReadBlobs implements repb.ContentAddressableStorageServer.
func (s *Server) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	var total int64
	for _, d := range req.GetDigests() {
		total += d.GetSizeBytes()
	}
	if total > s.opts.MaxBatchTotalSize {
		return nil, s.status(ctx, fmt.Errorf("%w: batch of %d bytes, at most %d", blobstore.ErrInvalid, total, s.opts.MaxBatchTotalSize))
	}
	zstd := slices.Contains(req.GetAcceptableCompressors(), repb.Compressor_ZSTD)
	resp := &repb.BatchReadBlobsResponse{Responses: make([]*repb.BatchReadBlobsResponse_Response, len(req.GetDigests()))}
	for i, pd := range req.GetDigests() {
		data, err := s.readBlob(ctx, c.Org(), pd, zstd)
		r := &repb.BatchReadBlobsResponse_Response{Digest: pd, Data: data, Status: rpcStatus(err)}
		if zstd && err == nil {
			r.Compressor = repb.Compressor_ZSTD
		}
		resp.Responses[i] = r
	}
	return resp, nil
}

// readBlob returns a blob for a batch response, compressed if zstd.
func (s *Server) readBlob(ctx context.Context, org string, pd *repb.Digest, zstd bool) ([]byte, error) {
	d, err := actionresult.FromProto(pd)
	if err != nil {
		return nil, err
	}
	ref := blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: d}
	if zstd {
		return s.readCompressedBlob(ctx, ref)
	}
	r, size, err := s.store.Get(ctx, ref, 0, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	return b, nil
}

// GetTree implements repb.ContentAddressableStorageServer: the directories
// under root_digest, breadth first, page_size at a time (page tokens are
// the number of directories already sent). Missing directories are left out.
func (s *Server) GetTree(req *repb.GetTreeRequest, stream repb.ContentAddressableStorage_GetTreeServer) error {
	ctx := stream.Context()
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return s.status(ctx, err)
	}
	root, err := actionresult.FromProto(req.GetRootDigest())
	if err != nil {
		return s.status(ctx, err)
	}
	skip, err := parsePageToken(req.GetPageToken())
	if err != nil {
		return s.status(ctx, err)
	}
	pageSize := int(req.GetPageSize())
	if pageSize <= 0 || pageSize > 10000 {
		pageSize = 10000
	}
	queue := []*repb.Digest{actionresult.ToProto(root)}
	seen := map[blobstore.Digest]bool{root: true}
	var page []*repb.Directory
	sent := 0
	for len(queue) > 0 {
		pd := queue[0]
		queue = queue[1:]
		b, err := s.readBlob(ctx, c.Org(), pd, false)
		if err != nil {
			continue
		}
		dir := &repb.Directory{}
		if err := proto.Unmarshal(b, dir); err != nil {
			return s.status(ctx, fmt.Errorf("%w: directory %s: %v", blobstore.ErrInvalid, pd.GetHash(), err))
		}
		for _, n := range dir.GetDirectories() {
			d, err := actionresult.FromProto(n.GetDigest())
			if err != nil || seen[d] {
				continue
			}
			seen[d] = true
			queue = append(queue, n.GetDigest())
		}
		sent++
		if sent <= skip {
			continue
		}
		page = append(page, dir)
		if len(page) == pageSize {
			token := ""
			if len(queue) > 0 {
				token = fmt.Sprint(sent)
			}
			if err := stream.Send(&repb.GetTreeResponse{Directories: page, NextPageToken: token}); err != nil {
				return err
			}
			page = nil
		}
	}
	if len(page) > 0 || sent <= skip {
		return stream.Send(&repb.GetTreeResponse{Directories: page})
	}
	return nil
}

func parsePageToken(t string) (int, error) {
	if t == "" {
		return 0, nil
	}
	n, err := blobstore.ParseSize(t)
	if err != nil || n > 1<<31 {
		return 0, fmt.Errorf("%w: page token %q", blobstore.ErrInvalid, t)
	}
	return int(n), nil
}
