package sqlstore

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Control work queued behind several bulk units (log writes) runs after
// the one in progress, not after all of them: a flood of job output must
// not hold a lease renewal past the lease's ttl.
func TestCommitterControlWorkOvertakesBulk(t *testing.T) {
	db, err := openSQLite(filepath.Join(t.TempDir(), "nimbus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := db.batch
	ctx := context.Background()

	var mu sync.Mutex
	var order []string
	unit := func(name string, wait chan struct{}) func(querier) error {
		return func(querier) error {
			if wait != nil {
				<-wait
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	var wg sync.WaitGroup
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				t.Error(err)
			}
		}()
	}
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the close above, if the test fails early
	run(func() error { return c.runBulk(ctx, unit("bulk-1", release)) })
	waitFor("the first bulk unit to be taken", func() bool { return len(c.bulk) == 0 })
	time.Sleep(20 * time.Millisecond)
	run(func() error { return c.runBulk(ctx, unit("bulk-2", nil)) })
	waitFor("bulk-2 queued", func() bool { return len(c.bulk) == 1 })
	run(func() error { return c.runBulk(ctx, unit("bulk-3", nil)) })
	waitFor("bulk-3 queued", func() bool { return len(c.bulk) == 2 })
	run(func() error { return c.run(ctx, unit("renewal", nil)) })
	waitFor("the renewal queued", func() bool { return len(c.requests) == 1 })
	free()
	wg.Wait()

	want := []string{"bulk-1", "renewal", "bulk-2", "bulk-3"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
}
