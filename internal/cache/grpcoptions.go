package cache

import (
	"runtime"

	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/cache/reapi"
)

// grpcServerOptions are the options NewGRPCServer gives its server:
// messages up to the largest batch (MaxBatchTotalSize, ~4 MiB) and
// ByteStream chunk, plus framing; the REAPI codec, which decodes upload
// chunks without copying them (the standard protobuf codec for every other
// message, so other services on the same server are unaffected); and
// stream workers: calls run on a few long-lived goroutines whose stacks
// have grown already, instead of a fresh goroutine per call that grows its
// stack again each time (a quarter of the server's CPU under small reads
// in the profile of issue 11).
func grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(8 << 20),
		grpc.ForceServerCodecV2(reapi.Codec()),
		grpc.NumStreamWorkers(uint32(max(4, runtime.GOMAXPROCS(0)))),
	}
}
