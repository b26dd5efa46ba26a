package cache

import (
	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/cache/reapi"
)

// GRPCServerOptions are the options the cache wants from the gRPC server
// that RegisterGRPC registers on: messages up to the largest batch
// (MaxBatchTotalSize, ~4 MiB) and ByteStream chunk, plus framing; and the
// REAPI codec, which decodes upload chunks without copying them (the
// standard protobuf codec for every other message, so other services on
// the same server are unaffected).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(8 << 20),
		grpc.ForceServerCodecV2(reapi.Codec()),
	}
}
