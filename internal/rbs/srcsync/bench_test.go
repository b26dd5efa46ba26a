package srcsync

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkSyncOneFileChanged measures a sync of a 10,000-file workspace in
// which one file changed since the last sync, over real gRPC on loopback,
// scanning the whole workspace (no inotify: the worst case). The goal is
// < 200 ms per sync.
func BenchmarkSyncOneFileChanged(b *testing.B) { benchmarkSyncOneFileChanged(b, false) }

// BenchmarkSyncOneFileChangedWatched is the same with inotify, as the proxy
// runs it: only the changed directory is read again.
func BenchmarkSyncOneFileChangedWatched(b *testing.B) { benchmarkSyncOneFileChanged(b, true) }

func benchmarkSyncOneFileChanged(b *testing.B, watch bool) {
	tmp := b.TempDir()
	ws := filepath.Join(tmp, "ws")
	for d := 0; d < 100; d++ {
		for f := 0; f < 100; f++ {
			write(b, ws, fmt.Sprintf("pkg%03d/file%03d.cc", d, f), fmt.Sprintf("int f%d_%d() { return %d; }\n", d, f, d*f), 0o644)
		}
	}
	a := startAgent(b, filepath.Join(tmp, "agent"))
	c := NewClient(ws, filepath.Join(tmp, "state", "sync"), slog.New(slog.DiscardHandler))
	if watch {
		if err := c.Watch(); err != nil {
			b.Skip(err)
		}
		defer c.Close()
	}
	ctx := context.Background()
	for range 2 { // the second sync reads the directories watched after the first
		if _, err := c.Sync(ctx, "s", a.open); err != nil {
			b.Fatal(err)
		}
	}
	target := filepath.Join(ws, "pkg042", "file042.cc")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := os.WriteFile(target, []byte(fmt.Sprintf("int g() { return %d; }\n", i)), 0o644); err != nil {
			b.Fatal(err)
		}
		st, err := c.Sync(ctx, "s", a.open)
		if err != nil {
			b.Fatal(err)
		}
		if st.Blobs != 1 || st.Scan.Entries != 10100 {
			b.Fatalf("sync moved %d blobs over %d entries", st.Blobs, st.Scan.Entries)
		}
	}
}
