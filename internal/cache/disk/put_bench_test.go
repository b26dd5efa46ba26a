package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"runtime"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// BenchmarkPut64M is the server's upload path without the network: a
// 64 MiB CAS blob through blobstore.Put into the disk store (hashing,
// writing, durable commit), a new blob each time, read 1 MiB at a time as
// from a connection.
//
//	go test -run XXX -bench Put64M ./internal/cache/disk/
func BenchmarkPut64M(b *testing.B) {
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "sync"
		}
		b.Run(name, func(b *testing.B) {
			s := openStore(b, b.TempDir(), Options{NoSync: !sync})
			data := make([]byte, 64<<20)
			rand.Read(data)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := range b.N {
				data[0], data[1] = byte(i), byte(i>>8) // a new blob
				b.StopTimer()
				ref := blobstore.Ref{Org: "o", Kind: blobstore.KindCAS, Digest: blobstore.DigestOf(data)}
				b.StartTimer()
				if err := blobstore.Put(context.Background(), s, ref, int64(len(data)), struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPut4KConcurrent is the HTTP PUT 4 KiB row's storage path: 32
// writers of new random 4 KiB CAS blobs at once, each acknowledged only once
// durable (what the group commit is for).
//
//	go test -run XXX -bench Put4KConcurrent ./internal/cache/disk/
func BenchmarkPut4KConcurrent(b *testing.B) {
	s := openStore(b, b.TempDir(), Options{})
	b.SetParallelism(32 / max(1, runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		data := make([]byte, 4096)
		for pb.Next() {
			rand.Read(data)
			ref := blobstore.Ref{Org: "o", Kind: blobstore.KindCAS, Digest: blobstore.DigestOf(data)}
			if err := blobstore.Put(context.Background(), s, ref, int64(len(data)), bytes.NewReader(data)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
