package disk

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// fillFiles writes n small CAS blobs for org straight into the layout
// (faster than through the store) and returns their digests.
func fillFiles(b *testing.B, root, org string, n int) []blobstore.Digest {
	dir := filepath.Join(root, "orgs", orgDirName(org))
	for _, k := range blobstore.Kinds {
		for sh := range 256 {
			if err := os.MkdirAll(filepath.Join(dir, k.String(), hexByte(sh)), 0o700); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "org"), []byte(org), 0o600); err != nil {
		b.Fatal(err)
	}
	ds := make([]blobstore.Digest, n)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var data [8]byte
			for i := w; i < n; i += workers {
				binary.LittleEndian.PutUint64(data[:], uint64(i))
				d := blobstore.Digest{Hash: sha256.Sum256(data[:]), Size: 8}
				ds[i] = d
				h := d.Hash.String()
				if err := os.WriteFile(filepath.Join(dir, "cas", h[:2], h), data[:], 0o600); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return ds
}

// BenchmarkRestartMillion measures how soon a store holding a million
// entries serves after a restart: Open (loading the index snapshot) and
// the first answers, while the reconciling walk of the files runs behind.
// It also reports how long that walk takes. Setup writes a million files
// (minutes, about 4 GB of blocks):
//
//	go test -run XXX -bench RestartMillion -benchtime 1x ./internal/cache/disk/
func BenchmarkRestartMillion(b *testing.B) {
	const n = 1_000_000
	root := b.TempDir()
	start := time.Now()
	ds := fillFiles(b, root, "org", n)
	s, err := Open(root, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for !s.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Len() != n {
		b.Fatalf("indexed %d entries, want %d", s.Len(), n)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d files indexed in %s", n, time.Since(start).Round(time.Second))
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		s, err := Open(root, Options{})
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Since(t0)
		// First answers: a read and an existence check of 1,000 digests.
		d := ds[(i*7919)%n]
		r, _, err := s.Get(context.Background(), blobstore.Ref{Org: "org", Kind: blobstore.KindCAS, Digest: d}, 0, 0)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
		missing, err := s.FindMissing(context.Background(), "org", blobstore.KindCAS, ds[:1000])
		if err != nil || len(missing) != 0 {
			b.Fatalf("FindMissing after restart: %d missing, %v", len(missing), err)
		}
		serving := time.Since(t0)
		for !s.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
		walked := time.Since(t0)
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		b.ReportMetric(opened.Seconds(), "s-open")
		b.ReportMetric(serving.Seconds(), "s-to-serving")
		b.ReportMetric(walked.Seconds(), "s-walk-done")
		fmt.Fprintf(os.Stderr, "restart with %d entries: open %s, serving %s, walk done %s\n", n, opened, serving, walked)
	}
}
