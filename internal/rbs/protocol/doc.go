// Package protocol holds the wire definitions of remote Bazel: Bazel's own
// client/server protocol (commandserverpb) and the tunnel between the proxy
// and an agent (tunnelpb). The Go code in both is generated and committed;
// after editing a .proto file, regenerate it with
//
//	go generate ./internal/rbs/protocol
//
// which needs protoc (Debian: apt-get install protobuf-compiler),
// protoc-gen-go v1.36.12 and protoc-gen-go-grpc v1.5.1 on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
package protocol

//go:generate protoc -I . --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative commandserverpb/command_server.proto tunnelpb/tunnel.proto
