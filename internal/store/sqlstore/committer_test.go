package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// Concurrent transactions share commits on SQLite, but each one's failure
// (or panic) undoes only its own changes, and every acknowledged one is
// there after a reopen.
func TestGroupCommitIsolation(t *testing.T) {
	path := t.TempDir() + "/nimbus.db"
	db := storetest.OpenPath(t, path)
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]error, 60)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = db.InTx(ctx, func(r store.Repos) error {
				if err := r.Orgs().Create(ctx, store.Org{ID: fmt.Sprint("org_", i), Name: fmt.Sprint("n", i), CreatedAt: time.Now()}); err != nil {
					return err
				}
				switch i % 6 {
				case 1:
					return errors.New("changed my mind")
				case 2:
					panic("boom")
				case 3:
					// A constraint violation inside the unit.
					return r.Orgs().Create(ctx, store.Org{ID: fmt.Sprint("org_", i), Name: "dup", CreatedAt: time.Now()})
				}
				return nil
			})
		}()
	}
	wg.Wait()
	db.Close()
	db = storetest.OpenPath(t, path)
	for i, err := range results {
		_, gerr := db.Orgs().Get(ctx, fmt.Sprint("org_", i))
		wantOK := i%6 != 1 && i%6 != 2 && i%6 != 3
		if wantOK && (err != nil || gerr != nil) {
			t.Errorf("unit %d: err %v, after reopen %v", i, err, gerr)
		}
		if !wantOK && (err == nil || !errors.Is(gerr, store.ErrNotFound)) {
			t.Errorf("unit %d should have failed and left nothing: err %v, after reopen %v", i, err, gerr)
		}
	}
}

// A caller whose context ends while its work waits in the queue gets the
// context's error, and its work does not happen.
func TestGroupCommitCancelledWhileQueued(t *testing.T) {
	db := storetest.Open(t, "sqlite")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := db.Orgs().Create(ctx, store.Org{ID: "org_x", Name: "x", CreatedAt: time.Now()})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("create with a cancelled context: %v", err)
	}
	if _, err := db.Orgs().Get(context.Background(), "org_x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cancelled create happened: %v", err)
	}
}

func BenchmarkConcurrentWrites(b *testing.B) {
	for _, engine := range storetest.Engines {
		b.Run(engine, func(b *testing.B) {
			db := storetest.Open(b, engine)
			ctx := context.Background()
			b.SetParallelism(16)
			var n int64
			var mu sync.Mutex
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					n++
					i := n
					mu.Unlock()
					if err := db.Audit().Append(ctx, store.AuditEntry{At: time.Now(), OrgID: "o", Actor: "a", Action: fmt.Sprint(i), Target: "t"}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
