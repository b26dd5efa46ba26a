package reapi

import (
	"fmt"
	"sync"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Codec returns the gRPC codec for a server that serves the cache (pass
// it with grpc.ForceServerCodecV2): the standard protobuf codec, except
// that a ByteStream WriteRequest's data stays in the buffer gRPC received
// it in, instead of being copied into fresh memory for every chunk of an
// upload; the Write handler gives the buffer back once the chunk is
// stored. Without it everything works the same, with one copy more.
func Codec() encoding.CodecV2 { return writeCodec{std: encoding.GetCodecV2(proto.Name)} }

type writeCodec struct{ std encoding.CodecV2 }

// held maps a decoded *bytestream.WriteRequest to the mem.Buffer its Data
// aliases, until release.
var held sync.Map

func (c writeCodec) Name() string                           { return c.std.Name() }
func (c writeCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

func (c writeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*bytestream.WriteRequest)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	if err := DecodeWriteRequest(buf.ReadOnlyData(), req); err != nil {
		buf.Free()
		return err
	}
	if len(req.Data) == 0 {
		buf.Free()
		return nil
	}
	held.Store(req, buf)
	return nil
}

// release gives back the buffer behind req's data (if the codec decoded
// it); req.Data must not be used afterwards.
func release(req *bytestream.WriteRequest) {
	if req == nil {
		return
	}
	if b, ok := held.LoadAndDelete(req); ok {
		req.Data = nil
		b.(mem.Buffer).Free()
	}
}

// DecodeWriteRequest decodes a ByteStream WriteRequest from b as
// proto.Unmarshal would, except that Data aliases b and unknown fields are
// dropped.
func DecodeWriteRequest(b []byte, m *bytestream.WriteRequest) error {
	m.Reset()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("decode WriteRequest: %w", protowire.ParseError(n))
		}
		if num > protowire.MaxValidNumber {
			return fmt.Errorf("decode WriteRequest: field number %d out of range", num)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("decode WriteRequest: resource_name: %w", protowire.ParseError(n))
			}
			if !utf8.Valid(v) {
				return fmt.Errorf("decode WriteRequest: resource_name: invalid UTF-8")
			}
			m.ResourceName = string(v)
			b = b[n:]
		case (num == 2 || num == 3) && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("decode WriteRequest: field %d: %w", num, protowire.ParseError(n))
			}
			if num == 2 {
				m.WriteOffset = int64(v)
			} else {
				m.FinishWrite = protowire.DecodeBool(v)
			}
			b = b[n:]
		case num == 10 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("decode WriteRequest: data: %w", protowire.ParseError(n))
			}
			m.Data = v[:len(v):len(v)]
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("decode WriteRequest: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}
