package cache_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// BenchmarkHotPathGet4K is one authenticated 4 KiB GET through the edge
// (token, policy) and the HTTP cache handler, without the network: its
// allocations per request are the figure to watch (go test -bench
// HotPath -benchmem ./internal/cache/).
func BenchmarkHotPathGet4K(b *testing.B) {
	e := startEnv(b, cache.Config{})
	blob := make([]byte, 4096)
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
