package cache

import "google.golang.org/grpc"

// GRPCServerOptions are the options the cache needs from the gRPC server
// that RegisterGRPC registers on: messages up to the largest batch
// (MaxBatchTotalSize, ~4 MiB) and ByteStream chunk, plus framing.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(8 << 20)}
}
