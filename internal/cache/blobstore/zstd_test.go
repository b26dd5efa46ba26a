package blobstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestGetZstdOfPlainBlobs: a store that keeps blobs plain serves them
// compressed as they are read, small ones in one piece and large ones
// streamed; offset and limit count compressed bytes, and an offset past
// the end is ErrInvalid.
func TestGetZstdOfPlainBlobs(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	dec, _ := zstd.NewReader(nil)
	read := func(ref Ref, offset, limit int64) ([]byte, error) {
		r, _, err := GetZstd(ctx, m, ref, offset, limit)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	for _, size := range []int{0, 5000, 3 << 20} {
		data := bytes.Repeat([]byte("a blob that compresses "), size/23+1)[:size]
		ref := Ref{Org: "o", Kind: KindCAS, Digest: DigestOf(data)}
		if err := PutBytes(ctx, m, ref, data); err != nil {
			t.Fatal(err)
		}
		whole, err := read(ref, 0, 0)
		if err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if plain, err := dec.DecodeAll(whole, nil); err != nil || !bytes.Equal(plain, data) {
			t.Fatalf("%d bytes: the stream decodes to %d bytes, %v", size, len(plain), err)
		}
		n := int64(len(whole))
		for _, rg := range [][2]int64{{0, 1}, {n / 2, 0}, {1, n / 3}, {n, 0}} {
			got, err := read(ref, rg[0], rg[1])
			want := whole[rg[0]:]
			if rg[1] > 0 {
				want = want[:rg[1]]
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%d bytes, range %v: %d bytes, %v", size, rg, len(got), err)
			}
		}
		if _, err := read(ref, n+1, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("%d bytes: offset past the end: %v, want ErrInvalid", size, err)
		}
	}
}
