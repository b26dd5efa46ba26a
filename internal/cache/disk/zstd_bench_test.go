package disk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// BenchmarkReadCompressible reads compressible CAS blobs (text) of several
// sizes, as the server's read paths do, from a store that keeps them
// compressed and from one that keeps them plain:
//
//   - plain/stored-plain: a plain read of a plain file (the baseline).
//
//   - plain/stored-zstd: a plain read of a compressed file (decode, hash).
//
//   - zstd/stored-zstd: a compressed read of a compressed file (the file's
//     bytes; no encoder).
//
//   - zstd/stored-plain: a compressed read of a plain file (encode while
//     reading: what every compressed read cost before compression at rest).
//
//     go test -run XXX -bench ReadCompressible -benchmem ./internal/cache/disk/
func BenchmarkReadCompressible(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		data := compressible(0, size)
		ref := cas("o", data)
		for _, stored := range []string{"plain", "zstd"} {
			s := openStore(b, b.TempDir(), Options{NoSync: true, NoCompression: stored == "plain"})
			v := blobstore.NewVerifying(s)
			put(b, v, ref, data)
			buf := make([]byte, 2*size)
			for _, read := range []string{"plain", "zstd"} {
				b.Run(fmt.Sprintf("%s/stored-%s/%dKiB", read, stored, size>>10), func(b *testing.B) {
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for range b.N {
						var r io.ReadCloser
						var err error
						if read == "plain" {
							r, _, err = v.Get(ctx, ref, 0, 0)
						} else {
							r, _, err = blobstore.GetZstd(ctx, v, ref, 0, 0)
						}
						if err != nil {
							b.Fatal(err)
						}
						n, err := io.ReadFull(r, buf)
						r.Close()
						if err != io.ErrUnexpectedEOF || (read == "plain" && n != size) {
							b.Fatalf("read %d bytes: %v", n, err)
						}
					}
				})
			}
		}
	}
}

// BenchmarkWriteCompressible writes new CAS blobs (hashing, and with
// compression on, compressing or trying to) without the sync, text and
// random data, with compression at rest on and off.
//
//	go test -run XXX -bench WriteCompressible -benchmem ./internal/cache/disk/
func BenchmarkWriteCompressible(b *testing.B) {
	ctx := context.Background()
	for _, size := range []int{4 << 10, 1 << 20} {
		for _, kind := range []string{"text", "random"} {
			for _, mode := range []string{"on", "off"} {
				b.Run(fmt.Sprintf("%s/%dKiB/compression-%s", kind, size>>10, mode), func(b *testing.B) {
					s := openStore(b, b.TempDir(), Options{NoSync: true, NoCompression: mode == "off"})
					v := blobstore.NewVerifying(s)
					data := compressible(1, size)
					if kind == "random" {
						data = random(size)
					}
					b.SetBytes(int64(size))
					b.ReportAllocs()
					for i := range b.N {
						copy(data, fmt.Sprintf("%12d", i)) // a new blob
						b.StopTimer()
						ref := cas("o", data)
						b.StartTimer()
						if err := blobstore.Put(ctx, v, ref, int64(size), struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
