package reapi

import (
	"bytes"
	"testing"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeWriteRequest: the aliasing decoder accepts exactly what
// proto.Unmarshal accepts and yields the same fields.
func FuzzDecodeWriteRequest(f *testing.F) {
	for _, m := range []*bytestream.WriteRequest{
		{ResourceName: "uploads/u/blobs/" + string(bytes.Repeat([]byte("a"), 64)) + "/3", WriteOffset: 5, FinishWrite: true, Data: []byte("abc")},
		{Data: bytes.Repeat([]byte{0}, 1000)},
		{},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0xff, 0xfe})       // invalid UTF-8 name
	f.Add([]byte{0x52, 0x05, 'a'})              // truncated data
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff}) // truncated varint
	f.Add([]byte{0x0a, 0x01, 'a', 0x0a, 0x01, 'b', 0x98, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want, got bytestream.WriteRequest
		werr := proto.Unmarshal(b, &want)
		gerr := DecodeWriteRequest(b, &got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto.Unmarshal: %v, DecodeWriteRequest: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if want.ResourceName != got.ResourceName || want.WriteOffset != got.WriteOffset || want.FinishWrite != got.FinishWrite || !bytes.Equal(want.Data, got.Data) {
			t.Fatalf("decoded %+v, proto.Unmarshal %+v", &got, &want)
		}
	})
}
