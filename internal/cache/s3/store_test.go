package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/s3"
	"github.com/nimbus-build/nimbus/internal/cache/s3/s3test"
)

// counting counts the requests that reach the service, by method.
type counting struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.Method]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func (c *counting) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	srv    *s3test.Server
	raw    *s3.Client // bypasses the store, to look at the bucket
	rt     *counting
	bucket string
}

func newFixture(t *testing.T) *fixture {
	srv := s3test.Start(t)
	f := &fixture{srv: srv, bucket: "cache", rt: &counting{next: s3.NewTransport()}}
	f.raw = srv.Bucket(t, f.bucket)
	return f
}

func (f *fixture) open(t *testing.T, opts s3.Options) *s3.Store {
	t.Helper()
	c, err := s3.NewClient(f.srv.Config(f.bucket), f.rt, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := s3.Open(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitReady(t *testing.T, s *s3.Store) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !s.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("bucket listing did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func cas(org string, b []byte) blobstore.Ref {
	return blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: blobstore.DigestOf(b)}
}

func get(t *testing.T, s blobstore.Store, ref blobstore.Ref) ([]byte, error) {
	t.Helper()
	r, _, err := s.Get(context.Background(), ref, 0, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// objects lists every key in the bucket.
func (f *fixture) objects(t *testing.T) []string {
	t.Helper()
	objs, _, err := f.raw.List(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	return keys
}

// waitNoUploads polls until no multipart upload is left (aborts finish in
// the background).
func (f *fixture) waitNoUploads(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ups, err := f.raw.ListMultipart(context.Background(), "")
		// The gateway answers a listing that races an abort still
		// removing its parts with a 500 (S3 clients retry those): poll
		// again rather than fail.
		if err == nil && len(ups) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("multipart uploads left: %v (%v)", ups, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStoreRoundTripAndOrgIsolation(t *testing.T) {
	f := newFixture(t)
	s := f.open(t, s3.Options{Prefix: "nimbus/", PartSize: 5 << 20})
	waitReady(t, s)
	ctx := context.Background()
	small := randBytes(3000)
	big := randBytes(12 << 20) // three parts
	ac := blobstore.Ref{Org: "org-a", Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte("action"))}
	for _, tc := range []struct {
		ref  blobstore.Ref
		data []byte
	}{{cas("org-a", small), small}, {cas("org-a", big), big}, {ac, []byte("result")}} {
		if err := blobstore.PutBytes(ctx, s, tc.ref, tc.data); err != nil {
			t.Fatalf("put %s: %v", tc.ref, err)
		}
		got, err := get(t, s, tc.ref)
		if err != nil || !bytes.Equal(got, tc.data) {
			t.Fatalf("get %s: %d bytes, %v", tc.ref, len(got), err)
		}
	}
	r, size, err := s.Get(ctx, cas("org-a", big), 6<<20, 100)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(r)
	r.Close()
	if size != int64(len(big)) || !bytes.Equal(part, big[6<<20:6<<20+100]) {
		t.Errorf("range read: size %d, %d bytes", size, len(part))
	}
	for _, k := range f.objects(t) {
		if strings.Contains(k, "org-a") {
			t.Errorf("object key %q contains the org id", k)
		}
	}

	// Another org sees none of it, whatever it asks.
	ds := []blobstore.Digest{blobstore.DigestOf(small), blobstore.DigestOf(big)}
	missing, err := s.FindMissing(ctx, "org-b", blobstore.KindCAS, ds)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ds, missing); diff != "" {
		t.Errorf("org-b FindMissing (-want +got):\n%s", diff)
	}
	for _, ref := range []blobstore.Ref{cas("org-b", small), {Org: "org-b", Kind: blobstore.KindAC, Digest: ac.Digest}} {
		if _, err := get(t, s, ref); !errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("org-b get %s: %v, want ErrNotFound", ref, err)
		}
	}
	// A fresh store (another replica, or after a restart) answers the same
	// before and after its listing.
	s2 := f.open(t, s3.Options{Prefix: "nimbus/"})
	for _, org := range []string{"org-a", "org-b"} {
		missing, err := s2.FindMissing(ctx, org, blobstore.KindCAS, ds)
		if err != nil {
			t.Fatal(err)
		}
		want := ds
		if org == "org-a" {
			want = nil
		}
		if diff := cmp.Diff(want, missing); diff != "" {
			t.Errorf("fresh store, %s FindMissing (-want +got):\n%s", org, diff)
		}
	}
}

// TestExistenceAnswersFromMemory: once the bucket is listed, existence
// questions cost no request; a read of an unknown blob costs one GET (it
// may have been written through another replica since), never a HEAD.
func TestExistenceAnswersFromMemory(t *testing.T) {
	f := newFixture(t)
	seed := f.open(t, s3.Options{})
	var ds []blobstore.Digest
	for i := range 50 {
		b := randBytes(100 + i)
		if err := blobstore.PutBytes(context.Background(), seed, cas("org-a", b), b); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, blobstore.DigestOf(b))
	}
	absentBlob := randBytes(10)
	s := f.open(t, s3.Options{})
	waitReady(t, s)
	heads, gets := f.rt.count(http.MethodHead), f.rt.count(http.MethodGet)
	for range 20 {
		missing, err := s.FindMissing(context.Background(), "org-a", blobstore.KindCAS, append(ds, blobstore.DigestOf(absentBlob)))
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != 1 {
			t.Fatalf("missing = %v, want the absent blob only", missing)
		}
		if _, err := get(t, s, cas("org-a", absentBlob)); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("get absent: %v", err)
		}
	}
	if h, g := f.rt.count(http.MethodHead)-heads, f.rt.count(http.MethodGet)-gets; h != 0 || g != 20 {
		t.Errorf("20 existence answers and 20 reads of an absent blob sent %d HEAD and %d GET requests, want 0 and 20", h, g)
	}
	// Written through another store after the listing: readable at once.
	late := randBytes(300)
	if err := blobstore.PutBytes(context.Background(), seed, cas("org-a", late), late); err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, s, cas("org-a", late)); err != nil || !bytes.Equal(got, late) {
		t.Errorf("blob written by another replica after the listing: %v", err)
	}
}

// TestPartialUploadsNeverVisible: an upload abandoned midway, one whose
// content does not match its digest, and one whose connection dies leave
// no object behind, single PUT or multipart.
func TestPartialUploadsNeverVisible(t *testing.T) {
	f := newFixture(t)
	s := f.open(t, s3.Options{PartSize: 5 << 20})
	ctx := context.Background()
	for _, size := range []int{1, 4096, 11 << 20} {
		data := randBytes(size)
		ref := cas("org-a", data)

		// Abandoned: all bytes but the last, then Close.
		w, err := s.NewWriter(ctx, ref, int64(size))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data[:size-1]); err != nil {
			t.Fatal(err)
		}
		w.Close()

		// Every byte, but the wrong bytes: the check in front of the
		// store (as the cache composes it) refuses the Commit, and the
		// store's held-back last byte keeps the bucket from ever
		// receiving a complete body.
		bad := bytes.Clone(data)
		bad[size/2] ^= 1
		w, err = blobstore.NewVerifying(s).NewWriter(ctx, ref, int64(size))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(bad); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); !errors.Is(err, blobstore.ErrInvalid) {
			t.Errorf("size %d: commit of wrong content: %v, want ErrInvalid", size, err)
		}
		w.Close()

		if keys := f.objects(t); len(keys) != 0 {
			t.Errorf("size %d: objects after failed uploads: %v", size, keys)
		}
		f.waitNoUploads(t)
		fresh := f.open(t, s3.Options{})
		if missing, err := fresh.FindMissing(ctx, "org-a", blobstore.KindCAS, []blobstore.Digest{ref.Digest}); err != nil || len(missing) != 1 {
			t.Errorf("size %d: a fresh store finds %v (%v)", size, missing, err)
		}
	}

	// Every byte written but no Commit (the caller found the upload bad):
	// an action cache entry has no hash for the service to check, so only
	// the held-back last byte keeps it invisible.
	for _, size := range []int{1, 3000, 11 << 20} {
		ac := blobstore.Ref{Org: "org-a", Kind: blobstore.KindAC, Digest: blobstore.DigestOf(randBytes(8))}
		w, err := s.NewWriter(ctx, ac, int64(size))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(randBytes(size)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if keys := f.objects(t); len(keys) != 0 {
			t.Errorf("AC of %d bytes written but not committed is visible: %v", size, keys)
		}
	}
	f.waitNoUploads(t)

	// The server dies in the middle of an upload: nothing appears once it
	// is back.
	data := randBytes(11 << 20)
	ref := cas("org-a", data)
	w, err := s.NewWriter(ctx, ref, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:7<<20]); err != nil {
		t.Fatal(err)
	}
	f.srv.Restart()
	if _, err := w.Write(data[7<<20:]); err == nil {
		if err := w.Commit(ctx); err == nil {
			t.Fatal("commit succeeded across a server restart")
		}
	}
	w.Close()
	if keys := f.objects(t); len(keys) != 0 {
		t.Errorf("objects after the server died mid-upload: %v", keys)
	}
}

// TestQuotaBoundsWhatAnOrgHolds: an org cannot keep more than its quota in
// the bucket by writing past its disk quota; its oldest objects go first,
// never one used within the retention age, and other orgs are untouched.
func TestQuotaBoundsWhatAnOrgHolds(t *testing.T) {
	f := newFixture(t)
	clk := newClock()
	opts := s3.Options{
		OrgQuotas:    map[string]blobstore.Quota{"small": {Hard: 3000}},
		MinRetention: time.Hour,
		Now:          clk.Now,
	}
	s := f.open(t, opts)
	waitReady(t, s)
	ctx := context.Background()
	other := randBytes(5000)
	if err := blobstore.PutBytes(ctx, s, cas("other", other), other); err != nil {
		t.Fatal(err)
	}
	var blobs [][]byte
	for i := range 3 {
		blobs = append(blobs, randBytes(1000))
		if err := blobstore.PutBytes(ctx, s, cas("small", blobs[i]), blobs[i]); err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		clk.Advance(time.Minute)
	}
	// Full, and everything is recent: refused before any byte is sent.
	puts := f.rt.count(http.MethodPut)
	extra := randBytes(1000)
	if _, err := s.NewWriter(ctx, cas("small", extra), 1000); !errors.Is(err, blobstore.ErrQuotaExceeded) {
		t.Fatalf("write over a full quota: %v, want ErrQuotaExceeded", err)
	}
	if _, err := s.NewWriter(ctx, cas("small", randBytes(4000)), 4000); !errors.Is(err, blobstore.ErrQuotaExceeded) {
		t.Fatalf("blob over the quota: %v, want ErrQuotaExceeded", err)
	}
	if n := f.rt.count(http.MethodPut) - puts; n != 0 {
		t.Errorf("refused writes sent %d PUTs", n)
	}
	// Later, blob 1 is used again; the next write evicts blob 0 (the least
	// recently used), then blob 2.
	clk.Advance(2 * time.Hour)
	if _, err := get(t, s, cas("small", blobs[1])); err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]byte{extra, randBytes(1000)} {
		if err := blobstore.PutBytes(ctx, s, cas("small", b), b); err != nil {
			t.Fatalf("write %d after the retention age: %v", i, err)
		}
	}
	fresh := f.open(t, s3.Options{})
	missing, err := fresh.FindMissing(ctx, "small", blobstore.KindCAS, []blobstore.Digest{blobstore.DigestOf(blobs[0]), blobstore.DigestOf(blobs[1]), blobstore.DigestOf(blobs[2])})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]blobstore.Digest{blobstore.DigestOf(blobs[0]), blobstore.DigestOf(blobs[2])}, missing); diff != "" {
		t.Errorf("evicted (-want +got):\n%s", diff)
	}
	if _, err := get(t, fresh, cas("other", other)); err != nil {
		t.Errorf("another org's blob: %v", err)
	}
	// A store that finds the org over quota in the bucket (written by a
	// replica with a larger quota) trims it after listing.
	tight := f.open(t, s3.Options{OrgQuotas: map[string]blobstore.Quota{"other": {Hard: 1000}}})
	waitReady(t, tight)
	if _, err := get(t, fresh, cas("other", other)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("org over quota after listing kept its blob: %v", err)
	}
}

func TestConcurrentWrites(t *testing.T) {
	f := newFixture(t)
	s := f.open(t, s3.Options{})
	var wg sync.WaitGroup
	var failed atomic.Int32
	data := randBytes(20000)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := blobstore.PutBytes(context.Background(), s, cas("org-a", data), data); err != nil {
				t.Error(err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if got, err := get(t, s, cas("org-a", data)); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after concurrent writes: %v", err)
	}
}
