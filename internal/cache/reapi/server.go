package reapi

import (
	"context"
	"log/slog"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	smpb "github.com/bazelbuild/remote-apis/build/bazel/semver"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Options tunes a Server.
type Options struct {
	// MaxBatchTotalSize bounds the sum of blob sizes in one batch request
	// (announced in Capabilities). Default 4 MiB minus room for framing.
	MaxBatchTotalSize int64
	// ReadChunkSize is the size of ByteStream read messages. Default 256 KiB.
	ReadChunkSize int
}

// Server implements the REAPI cache services.
type Server struct {
	repb.UnimplementedContentAddressableStorageServer
	repb.UnimplementedActionCacheServer
	repb.UnimplementedCapabilitiesServer
	bytestream.UnimplementedByteStreamServer

	store   blobstore.Store
	log     *slog.Logger
	opts    Options
	uploads *uploads
	chunks  sync.Pool // *[]byte of ReadChunkSize
}

var (
	_ repb.ContentAddressableStorageServer = (*Server)(nil)
	_ repb.ActionCacheServer               = (*Server)(nil)
	_ repb.CapabilitiesServer              = (*Server)(nil)
	_ bytestream.ByteStreamServer          = (*Server)(nil)
)

// New returns a Server over store.
func New(store blobstore.Store, log *slog.Logger, opts Options) *Server {
	if opts.MaxBatchTotalSize <= 0 {
		opts.MaxBatchTotalSize = 4<<20 - 64<<10
	}
	if opts.ReadChunkSize <= 0 {
		opts.ReadChunkSize = 256 << 10
	}
	s := &Server{store: store, log: log.With("component", "cache.reapi"), opts: opts, uploads: newUploads()}
	s.chunks.New = func() any { b := make([]byte, s.opts.ReadChunkSize); return &b }
	return s
}

// Register registers the four services on g. Build g with the edge's
// interceptors (access.Gate.ServerOptions with Methods): handlers take the
// Caller they admitted from the context and check nothing themselves.
func (s *Server) Register(g *grpc.Server) {
	repb.RegisterContentAddressableStorageServer(g, s)
	repb.RegisterActionCacheServer(g, s)
	repb.RegisterCapabilitiesServer(g, s)
	bytestream.RegisterByteStreamServer(g, s)
}

// Close abandons the resumable uploads in progress.
func (s *Server) Close() { s.uploads.closeAll() }

func (s *Server) status(ctx context.Context, err error) error { return toStatus(ctx, s.log, err) }

// Status turns an error into the gRPC status the client sees; unexpected
// errors are logged and answered with a generic message.
func (s *Server) Status(ctx context.Context, err error) error { return toStatus(ctx, s.log, err) }

// GetCapabilities implements repb.CapabilitiesServer.
func (s *Server) GetCapabilities(ctx context.Context, req *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions:                 []repb.DigestFunction_Value{repb.DigestFunction_SHA256},
			ActionCacheUpdateCapabilities:   &repb.ActionCacheUpdateCapabilities{UpdateEnabled: c.May(ctx, access.WriteAC)},
			MaxBatchTotalSizeBytes:          s.opts.MaxBatchTotalSize,
			SymlinkAbsolutePathStrategy:     repb.SymlinkAbsolutePathStrategy_ALLOWED,
			SupportedCompressors:            []repb.Compressor_Value{repb.Compressor_ZSTD},
			SupportedBatchUpdateCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD},
		},
		LowApiVersion:  &smpb.SemVer{Major: 2},
		HighApiVersion: &smpb.SemVer{Major: 2, Minor: 3},
	}, nil
}
