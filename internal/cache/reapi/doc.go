// Package reapi serves Bazel's Remote Execution API v2 cache services over
// gRPC: Capabilities, ContentAddressableStorage, ActionCache and ByteStream,
// backed by a blobstore.Store and scoped to the org of the caller's token.
// The instance name a client sends is ignored: the token alone decides the
// namespace.
package reapi
