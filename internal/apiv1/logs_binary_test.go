package apiv1

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const testMaxChunk = 1 << 10

func TestLogsBinaryRoundTrip(t *testing.T) {
	for _, req := range []Logs{
		{Fence: 1, End: true},
		{Fence: 7, Chunks: []LogChunk{{Seq: 0, Data: []byte("hello\n")}}},
		{Fence: 3, Chunks: []LogChunk{{Fence: 3, Seq: 5, Data: []byte("a")}, {Seq: 6, Data: nil}, {Seq: 1 << 40, Data: bytes.Repeat([]byte{0, 0xff, '\n'}, 300)}}, End: true},
		{Fence: -2, Chunks: []LogChunk{{Seq: 1<<63 - 1, Data: make([]byte, testMaxChunk)}}},
		{Fence: 1<<63 - 1},
	} {
		b, err := AppendLogsBinary(nil, req)
		if err != nil {
			t.Fatalf("encode %+v: %v", req, err)
		}
		got, err := DecodeLogsBinary(b, testMaxChunk)
		if err != nil {
			t.Fatalf("decode the encoding of %+v: %v", req, err)
		}
		// Every decoded chunk is of the request's fence.
		want := req
		want.Chunks = nil
		for _, c := range req.Chunks {
			c.Fence = req.Fence
			want.Chunks = append(want.Chunks, c)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

// TestLogsBinaryLayout pins the bytes of the documented form.
func TestLogsBinaryLayout(t *testing.T) {
	b, err := AppendLogsBinary([]byte("x"), Logs{Fence: 2, End: true, Chunks: []LogChunk{{Seq: 300, Data: []byte("hi")}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("xNLOG\x01\x01\x04\x01\xac\x02\x02hi")
	if !bytes.Equal(b, want) {
		t.Errorf("encoding: %q, want %q", b, want)
	}
}

func TestAppendLogsBinaryRefuses(t *testing.T) {
	for _, req := range []Logs{
		{Fence: 1, Chunks: []LogChunk{{Seq: -1}}},
		{Fence: 1, Chunks: []LogChunk{{Fence: 2, Seq: 0}}},
	} {
		if _, err := AppendLogsBinary(nil, req); err == nil {
			t.Errorf("%+v encoded; want an error", req)
		}
	}
}

func TestDecodeLogsBinaryRefuses(t *testing.T) {
	head := "NLOG\x01\x00\x02" // version 1, no flags, fence 1
	over64 := strings.Repeat("\xff", 10) + "\x01"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty", "", "magic"},
		{"short", "NLOG\x01", "magic"},
		{"bad magic", "JSON\x01\x00\x02\x00", "magic"},
		{"json", `{"fence":1,"chunks":[]}`, "magic"},
		{"version", "NLOG\x02\x00\x02\x00", "version 2"},
		{"flags", "NLOG\x01\x02\x02\x00", "flags"},
		{"no fence", "NLOG\x01\x00", "fence at byte 6: the body ends"},
		{"fence over 64 bits", "NLOG\x01\x00" + over64 + "\x00", "fence at byte 6: a varint over 64 bits"},
		{"no count", head, "chunk count at byte 7: the body ends"},
		{"count over 64 bits", head + over64, "chunk count at byte 7: a varint over 64 bits"},
		{"count past the body", head + "\x03\x00\x00\x00\x00", "chunk count 3"},
		{"huge count", head + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00\x00", "chunk count 18446744073709551615"},
		{"seq over 64 bits", head + "\x01" + over64 + "\x00", "chunks[0] seq at byte 8: a varint over 64 bits"},
		{"seq over int64", head + "\x01" + strings.Repeat("\x80", 9) + "\x01" + "\x00", "chunks[0] seq 9223372036854775808"},
		{"length cut", head + "\x01\x00\x80", "chunks[0] length at byte 9: the body ends"},
		{"length over 64 bits", head + "\x01\x00" + over64, "chunks[0] length at byte 9: a varint over 64 bits"},
		{"chunk over the limit", head + "\x01\x00\x81\x08" + strings.Repeat("a", testMaxChunk+1), "data of 1025 bytes, at most 1024"},
		{"length past the end", head + "\x01\x00\x05abcd", "chunks[0]: data of 5 bytes runs past the end of the body (4 bytes left)"},
		{"second chunk missing", head + "\x02\x00\x01a\x01", "chunks[1]"},
		{"trailing garbage", head + "\x01\x00\x01a" + "xyz", "3 bytes after the last chunk"},
		{"trailing after none", head + "\x00\x00", "1 bytes after the last chunk"},
		{"count over the bound", head + "\x91\x4e" + strings.Repeat("\x00\x00", MaxLogChunks+1), "chunk count 10001: at most 10000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeLogsBinary([]byte(tc.body), testMaxChunk)
			if err == nil {
				t.Fatalf("decoded %+v; want an error", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want one with %q", err, tc.want)
			}
		})
	}
}

// TestDecodeLogsBinarySlices: chunk data is a slice of the body, capped
// at its own end (an append to it cannot overwrite the next chunk).
func TestDecodeLogsBinarySlices(t *testing.T) {
	body, err := AppendLogsBinary(nil, Logs{Fence: 1, Chunks: []LogChunk{{Seq: 0, Data: []byte("ab")}, {Seq: 1, Data: []byte("cd")}}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := DecodeLogsBinary(body, testMaxChunk)
	if err != nil {
		t.Fatal(err)
	}
	if &req.Chunks[0].Data[0] != &body[len(body)-6] {
		t.Errorf("chunk data is a copy, not a slice of the body")
	}
	_ = append(req.Chunks[0].Data, 'X')
	if string(req.Chunks[1].Data) != "cd" {
		t.Errorf("an append to chunk 0 changed chunk 1 to %q", req.Chunks[1].Data)
	}
}

// FuzzLogsBinary: the decoder never panics, and what it accepts encodes
// back to the same request (and to the same bytes, but for varints
// written longer than needed).
func FuzzLogsBinary(f *testing.F) {
	for _, req := range []Logs{
		{Fence: 1, End: true},
		{Fence: 5, Chunks: []LogChunk{{Seq: 0, Data: []byte("line\n")}, {Seq: 1, Data: []byte("more")}}},
		{Fence: -1, Chunks: []LogChunk{{Seq: 1 << 50}}},
	} {
		b, err := AppendLogsBinary(nil, req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("NLOG\x01\x00\x02\x01\x00\x81\x08"))
	f.Add([]byte("NLOG\x01\x00\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeLogsBinary(body, testMaxChunk)
		if err != nil {
			return
		}
		for i, c := range req.Chunks {
			if c.Seq < 0 || len(c.Data) > testMaxChunk || c.Fence != req.Fence {
				t.Fatalf("chunks[%d] accepted: %+v", i, c)
			}
		}
		again, err := AppendLogsBinary(nil, req)
		if err != nil {
			t.Fatalf("accepted %+v, which does not encode: %v", req, err)
		}
		back, err := DecodeLogsBinary(again, testMaxChunk)
		if err != nil {
			t.Fatalf("the encoding of %+v does not decode: %v", req, err)
		}
		if diff := cmp.Diff(req, back, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("decode, encode, decode (-first +second):\n%s", diff)
		}
		if len(again) > len(body) {
			t.Fatalf("re-encoded in %d bytes, longer than the %d accepted", len(again), len(body))
		}
		if canonical(body) && !bytes.Equal(again, body) {
			t.Fatalf("re-encoded %q, not the accepted %q", again, body)
		}
	})
}

// canonical reports whether every varint of an accepted body is written
// in its fewest bytes (as AppendLogsBinary writes them).
func canonical(body []byte) bool {
	off := logsHeader
	next := func(signed bool) (uint64, bool) {
		var v uint64
		var n int
		if signed {
			var s int64
			s, n = binary.Varint(body[off:])
			v = uint64(s<<1) ^ uint64(s>>63)
		} else {
			v, n = binary.Uvarint(body[off:])
		}
		ok := n == len(binary.AppendUvarint(nil, v))
		off += n
		return v, ok
	}
	_, ok := next(true)
	count, ok2 := next(false)
	ok = ok && ok2
	for range count {
		_, okSeq := next(false)
		n, okLen := next(false)
		ok = ok && okSeq && okLen
		off += int(n)
	}
	return ok
}

// BenchmarkLogsBody compares the two forms of an agent's typical upload:
// 512 KiB of log lines in 8 chunks of 64 KiB.
func BenchmarkLogsBody(b *testing.B) {
	var req Logs
	req.Fence = 3
	for i := range 8 {
		var buf bytes.Buffer
		for j := 0; buf.Len() < 64<<10; j++ {
			fmt.Fprintf(&buf, "line %d: compiling src/module_%04d/file.go (%d of 500000)\n", j, j%9999, j)
		}
		req.Chunks = append(req.Chunks, LogChunk{Fence: 3, Seq: int64(i), Data: buf.Bytes()})
	}
	jsonBody, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	binBody, err := AppendLogsBinary(nil, req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("json/encode", func(b *testing.B) {
		b.SetBytes(int64(len(binBody)))
		for b.Loop() {
			if _, err := json.Marshal(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary/encode", func(b *testing.B) {
		b.SetBytes(int64(len(binBody)))
		for b.Loop() {
			if _, err := AppendLogsBinary(nil, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Decoding as the server does: a strict json.Decoder on the body.
	b.Run("json/decode", func(b *testing.B) {
		b.SetBytes(int64(len(binBody)))
		for b.Loop() {
			var got Logs
			d := json.NewDecoder(bytes.NewReader(jsonBody))
			d.DisallowUnknownFields()
			if err := d.Decode(&got); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The server reads the body into one buffer first (the JSON decoder
	// fills its own): the copy is counted.
	b.Run("binary/decode", func(b *testing.B) {
		b.SetBytes(int64(len(binBody)))
		for b.Loop() {
			body := bytes.Clone(binBody)
			if _, err := DecodeLogsBinary(body, 1<<20); err != nil {
				b.Fatal(err)
			}
		}
	})
}
