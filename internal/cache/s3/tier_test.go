package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/breaker"
	"github.com/nimbus-build/nimbus/internal/cache/disk"
	"github.com/nimbus-build/nimbus/internal/cache/s3"
)

// tier is the cache's composition: disk in front, the S3 store behind a
// circuit breaker (on a test clock) behind it.
type tier struct {
	f      *fixture
	clk    *clock
	br     *breaker.Breaker
	disk   *disk.Store
	s3     *s3.Store
	tiered *blobstore.Tiered
	rt     *counting // requests that got past the breaker
}

func newTier(t *testing.T, f *fixture) *tier {
	tr := &tier{f: f, clk: newClock(), rt: &counting{next: s3.NewTransport()}}
	tr.br = breaker.New(breaker.Options{Failures: 3, OpenFor: 10 * time.Second, Name: "s3", Now: tr.clk.Now})
	c, err := s3.NewClient(f.srv.Config(f.bucket), &breaker.Transport{Breaker: tr.br, Next: tr.rt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr.s3, err = s3.Open(c, s3.Options{Unavailable: func() error {
		if st := tr.br.State(); st != breaker.Closed {
			return fmt.Errorf("breaker %s: %w", st, blobstore.ErrUnavailable)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	tr.disk, err = disk.Open(t.TempDir(), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr.tiered = blobstore.NewTiered(tr.disk, tr.s3, slog.New(slog.DiscardHandler), blobstore.TieredOptions{RetryMax: 200 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr.tiered.Close(ctx)
		tr.s3.Close()
		tr.disk.Close()
	})
	return tr
}

// waitInBucket polls until ref is in the bucket (write-behind).
func (f *fixture) waitInBucket(t *testing.T, ref blobstore.Ref) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fresh, err := s3.NewClient(f.srv.Config(f.bucket), s3.NewTransport(), nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := s3.Open(fresh, s3.Options{})
		if err != nil {
			t.Fatal(err)
		}
		missing, err := st.FindMissing(context.Background(), ref.Org, ref.Kind, []blobstore.Digest{ref.Digest})
		st.Close()
		if err == nil && len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached the bucket (%v)", ref, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutage: with S3 down, requests fail fast once the breaker opens,
// what the disk holds is served, writes are acknowledged from the disk and
// copied later; after the wait a single probe finds S3 back and closes the
// breaker.
func TestOutage(t *testing.T) {
	f := newFixture(t)
	tr := newTier(t, f)
	ctx := context.Background()

	onDisk := randBytes(5000)
	if err := blobstore.PutBytes(ctx, tr.tiered, cas("org-a", onDisk), onDisk); err != nil {
		t.Fatal(err)
	}
	f.waitInBucket(t, cas("org-a", onDisk))
	// A blob only the bucket holds (written by another replica).
	inBucket := randBytes(6000)
	if err := blobstore.PutBytes(ctx, tr.s3, cas("org-a", inBucket), inBucket); err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, tr.tiered, cas("org-a", inBucket)); err != nil || !bytes.Equal(got, inBucket) {
		t.Fatalf("read through to the bucket: %v", err)
	}
	// Forget the filled copy: a fresh disk.
	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	tr.tiered.Close(closeCtx)
	cancel()
	tr.disk.Close()
	d, err := disk.Open(t.TempDir(), disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr.disk = d
	tr.tiered = blobstore.NewTiered(d, tr.s3, slog.New(slog.DiscardHandler), blobstore.TieredOptions{RetryMax: 200 * time.Millisecond})
	if err := blobstore.PutBytes(ctx, tr.tiered, cas("org-a", onDisk), onDisk); err != nil {
		t.Fatal(err)
	}

	f.srv.Stop()
	// Misses while S3 is down: each costs a request until the breaker opens.
	for i := 0; tr.br.State() != breaker.Open; i++ {
		if i > 10 {
			t.Fatalf("breaker still %s after %d failed reads", tr.br.State(), i)
		}
		if _, err := get(t, tr.tiered, cas("org-a", inBucket)); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("read of a bucket blob with S3 down: %v, want ErrNotFound", err)
		}
	}
	before := tr.rt.count(http.MethodGet) + tr.rt.count(http.MethodHead)
	for range 20 {
		if _, err := get(t, tr.tiered, cas("org-a", inBucket)); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("read with the breaker open: %v, want ErrNotFound", err)
		}
		if got, err := get(t, tr.tiered, cas("org-a", onDisk)); err != nil || !bytes.Equal(got, onDisk) {
			t.Fatalf("disk blob with S3 down: %v", err)
		}
		// Existence answers do not claim what cannot be read now.
		missing, err := tr.tiered.FindMissing(ctx, "org-a", blobstore.KindCAS, []blobstore.Digest{blobstore.DigestOf(inBucket), blobstore.DigestOf(onDisk)})
		if err != nil || len(missing) != 1 || missing[0] != blobstore.DigestOf(inBucket) {
			t.Fatalf("FindMissing with the breaker open = %v, %v", missing, err)
		}
	}
	if n := tr.rt.count(http.MethodGet) + tr.rt.count(http.MethodHead) - before; n != 0 {
		t.Errorf("%d requests reached S3 while the breaker was open", n)
	}
	// Writes go on (acknowledged once on disk).
	during := randBytes(7000)
	if err := blobstore.PutBytes(ctx, tr.tiered, cas("org-a", during), during); err != nil {
		t.Fatalf("write with S3 down: %v", err)
	}

	// S3 comes back; the breaker waits for its time, then one probe closes it.
	f.srv.Restart()
	if _, err := get(t, tr.tiered, cas("org-a", inBucket)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("read before the probe time: %v, want ErrNotFound", err)
	}
	tr.clk.Advance(11 * time.Second)
	if tr.br.State() != breaker.HalfOpen {
		t.Fatalf("breaker %s after its wait, want half-open", tr.br.State())
	}
	got, err := get(t, tr.tiered, cas("org-a", inBucket))
	if err != nil || !bytes.Equal(got, inBucket) {
		t.Fatalf("read after S3 came back: %v", err)
	}
	if tr.br.State() != breaker.Closed {
		t.Errorf("breaker %s after a good probe, want closed", tr.br.State())
	}
	// The write made during the outage reaches the bucket.
	f.waitInBucket(t, cas("org-a", during))
}
