package cache

import "google.golang.org/grpc"

// GRPCServerOptions are the options the cache wants from the gRPC server
// that RegisterGRPC registers on: messages up to the ByteStream chunk size
// plus framing, and flow-control windows and socket buffers sized for blob
// transfers (gRPC's 64 KiB defaults make a 64 MiB upload wait on window
// updates about a thousand times).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(8 << 20),
		grpc.InitialWindowSize(8 << 20),
		grpc.InitialConnWindowSize(32 << 20),
		grpc.ReadBufferSize(256 << 10),
		grpc.WriteBufferSize(256 << 10),
	}
}
