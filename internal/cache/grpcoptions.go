package cache

import (
	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/cache/reapi"
)

// grpcServerOptions are the options NewGRPCServer gives its server:
// messages up to the largest batch
// (MaxBatchTotalSize, ~4 MiB) and ByteStream chunk, plus framing; and the
// REAPI codec, which decodes upload chunks without copying them (the
// standard protobuf codec for every other message, so other services on
// the same server are unaffected).
func grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(8 << 20),
		grpc.ForceServerCodecV2(reapi.Codec()),
	}
}
