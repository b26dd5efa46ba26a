package cache_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/genproto/googleapis/bytestream"

	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// BenchmarkHotPathGet4K is one authenticated 4 KiB GET through the edge
// (token, policy) and the HTTP cache handler, without the network: its
// allocations per request are the figure to watch (go test -bench
// HotPath -benchmem ./internal/cache/). A random blob is stored as it
// came; a text one compressed, and decoded and checked on each GET.
func BenchmarkHotPathGet4K(b *testing.B) {
	b.Run("random", func(b *testing.B) { benchGet4K(b, randomBytes(4096)) })
	b.Run("text", func(b *testing.B) { benchGet4K(b, compressibleBytes(0, 4096)) })
}

func benchGet4K(b *testing.B, blob []byte) {
	e := startEnv(b, cache.Config{})
	d := blobstore.DigestOf(blob)
	if resp, _ := httpDo(b, "PUT", e.httpURL+"/cache/cas/"+d.Hash.String(), tokCIA, blob); resp.StatusCode != 200 {
		b.Fatalf("PUT: %d", resp.StatusCode)
	}
	h := e.svc.Handler()
	req := httptest.NewRequestWithContext(context.Background(), "GET", "/cache/cas/"+d.Hash.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tokCIA)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("GET: %d", w.Code)
		}
	}
}

// BenchmarkHotPathWriteExisting4K is one authenticated ByteStream Write of
// a 4 KiB blob the org already has, over loopback gRPC through the edge's
// interceptors: the server answers after the first message.
func BenchmarkHotPathWriteExisting4K(b *testing.B) {
	e := startEnv(b, cache.Config{})
	blob := randomBytes(4096)
	d := blobstore.DigestOf(blob)
	if resp, _ := httpDo(b, "PUT", e.httpURL+"/cache/cas/"+d.Hash.String(), tokCIA, blob); resp.StatusCode != 200 {
		b.Fatalf("PUT: %d", resp.StatusCode)
	}
	bs := bytestream.NewByteStreamClient(e.dial(b, tokCIA))
	name := "uploads/u/blobs/" + d.Hash.String() + "/4096"
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ws, err := bs.Write(ctx)
			if err != nil {
				b.Fatal(err)
			}
			ws.Send(&bytestream.WriteRequest{ResourceName: name, Data: blob, FinishWrite: true})
			if resp, err := ws.CloseAndRecv(); err != nil || resp.GetCommittedSize() != 4096 {
				b.Fatalf("write: %v %v", resp, err)
			}
		}
	})
}
