package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
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

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitReady polls until the background walk has finished.
func waitReady(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("index walk did not finish")
		}
		time.Sleep(time.Millisecond)
	}
}

func cas(org string, b []byte) blobstore.Ref {
	return blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: blobstore.DigestOf(b)}
}

func put(t testing.TB, s blobstore.Store, ref blobstore.Ref, b []byte) {
	t.Helper()
	if err := blobstore.PutBytes(context.Background(), s, ref, b); err != nil {
		t.Fatalf("put %s: %v", ref, err)
	}
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

func TestPutGetRanges(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	waitReady(t, s)
	data := []byte("hello, build cache")
	ref := cas("org1", data)
	put(t, s, ref, data)
	tests := []struct {
		offset, limit int64
		want          string
		err           error
	}{
		{0, 0, "hello, build cache", nil},
		{7, 0, "build cache", nil},
		{7, 5, "build", nil},
		{18, 0, "", nil},
		{19, 0, "", blobstore.ErrInvalid},
		{-1, 0, "", blobstore.ErrInvalid},
		{0, -1, "", blobstore.ErrInvalid},
	}
	for _, tc := range tests {
		r, size, err := s.Get(context.Background(), ref, tc.offset, tc.limit)
		if !errors.Is(err, tc.err) {
			t.Errorf("Get(%d, %d) err = %v, want %v", tc.offset, tc.limit, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if diff := cmp.Diff(tc.want, string(got)); diff != "" || size != int64(len(data)) {
			t.Errorf("Get(%d, %d) size %d (-want +got):\n%s", tc.offset, tc.limit, size, diff)
		}
	}
}

func TestEmptyBlobAlwaysExists(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	ref := blobstore.Ref{Org: "neworg", Kind: blobstore.KindCAS, Digest: blobstore.EmptyDigest}
	got, err := get(t, s, ref)
	if err != nil || len(got) != 0 {
		t.Fatalf("get empty: %q, %v", got, err)
	}
	missing, err := s.FindMissing(context.Background(), "neworg", blobstore.KindCAS, []blobstore.Digest{blobstore.EmptyDigest})
	if err != nil || len(missing) != 0 {
		t.Fatalf("FindMissing(empty) = %v, %v", missing, err)
	}
	put(t, s, ref, nil)
}

// TestVerifiesContent: behind blobstore.Verifying (as the cache composes
// it), content that does not match its digest is refused and leaves
// nothing behind.
func TestVerifiesContent(t *testing.T) {
	d := openStore(t, t.TempDir(), Options{})
	s := blobstore.NewVerifying(d)
	data := []byte("the real content")
	ref := cas("org1", data)
	tests := []struct {
		name    string
		size    int64
		content []byte
	}{
		{"wrong bytes", int64(len(data)), []byte("the fake content")},
		{"short", int64(len(data)), data[:4]},
		{"size not the digest's", 4, data[:4]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := blobstore.Put(context.Background(), s, ref, tc.size, bytes.NewReader(tc.content))
			if !errors.Is(err, blobstore.ErrInvalid) {
				t.Fatalf("Put = %v, want ErrInvalid", err)
			}
			if _, err := get(t, s, ref); !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("after a refused write, Get = %v, want ErrNotFound", err)
			}
		})
	}
	// Too many bytes is refused at Write.
	w, err := s.NewWriter(context.Background(), ref, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(append(bytes.Clone(data), 'x')); !errors.Is(err, blobstore.ErrInvalid) {
		t.Fatalf("oversized Write = %v, want ErrInvalid", err)
	}
	entries, _ := os.ReadDir(filepath.Join(d.root, "tmp"))
	if len(entries) != 1 { // the open writer's own file only
		t.Errorf("tmp holds %d files, want 1", len(entries))
	}
}

// TestLargeBlobInChunks writes blobs larger than kickBytes a chunk at a
// time, as uploads arrive, so the early writeback runs: the content read
// back is the content written, and a byte changed after the first
// writeback is still caught by the hash (of blobstore.Verifying, in front
// of the store as the cache composes it).
func TestLargeBlobInChunks(t *testing.T) {
	s := blobstore.NewVerifying(openStore(t, t.TempDir(), Options{}))
	data := make([]byte, 3*kickBytes+12345)
	for i := range data {
		data[i] = byte(i * 31 / 7)
	}
	ref := cas("org1", data)
	put := func(content []byte) error {
		w, err := s.NewWriter(context.Background(), ref, int64(len(content)))
		if err != nil {
			return err
		}
		defer w.Close()
		for p := content; len(p) > 0; {
			n := min(len(p), 1<<20)
			if _, err := w.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
		return w.Commit(context.Background())
	}
	bad := bytes.Clone(data)
	bad[kickBytes+1] ^= 1
	if err := put(bad); !errors.Is(err, blobstore.ErrInvalid) {
		t.Fatalf("corrupted upload: %v, want ErrInvalid", err)
	}
	if err := put(data); err != nil {
		t.Fatal(err)
	}
	got, err := get(t, s, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("content read back differs from the content written")
	}
}

func TestOrgIsolationAndDedup(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	waitReady(t, s)
	ctx := context.Background()
	data := []byte("shared dependency")
	put(t, s, cas("a", data), data)

	missing, err := s.FindMissing(ctx, "b", blobstore.KindCAS, []blobstore.Digest{blobstore.DigestOf(data)})
	if err != nil || len(missing) != 1 {
		t.Fatalf("org b sees org a's blob: missing = %v, %v", missing, err)
	}
	if _, err := get(t, s, cas("b", data)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("org b reads org a's blob: %v", err)
	}
	// b must prove possession: the wrong bytes are refused (by the
	// verification in front of the store).
	err = blobstore.Put(ctx, blobstore.NewVerifying(s), cas("b", data), int64(len(data)), bytes.NewReader([]byte("shared dependencX")))
	if !errors.Is(err, blobstore.ErrInvalid) {
		t.Fatalf("b claims a's blob with wrong bytes: %v", err)
	}
	put(t, s, cas("b", data), data)
	if got, err := get(t, s, cas("b", data)); err != nil || string(got) != string(data) {
		t.Fatalf("b after upload: %q, %v", got, err)
	}
	// One inode, two links.
	h := blobstore.DigestOf(data).Hash
	fa, _ := os.Stat(s.path(s.orgs[s.orgByName["a"]], blobstore.KindCAS, &h))
	fb, _ := os.Stat(s.path(s.orgs[s.orgByName["b"]], blobstore.KindCAS, &h))
	if !os.SameFile(fa, fb) {
		t.Error("orgs a and b do not share the blob's inode")
	}
	if got, want := s.Stats().Bytes, int64(len(data)); got != want {
		t.Errorf("physical bytes = %d, want %d (deduplicated)", got, want)
	}
	if s.OrgBytes("a") != int64(len(data)) || s.OrgBytes("b") != int64(len(data)) {
		t.Errorf("each org is charged for what it holds: a %d b %d", s.OrgBytes("a"), s.OrgBytes("b"))
	}
	// Action cache entries are per org.
	key := blobstore.DigestOf([]byte("action"))
	put(t, s, blobstore.Ref{Org: "a", Kind: blobstore.KindAC, Digest: key}, []byte("result-a"))
	if _, err := get(t, s, blobstore.Ref{Org: "b", Kind: blobstore.KindAC, Digest: key}); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("org b reads org a's action result: %v", err)
	}
}

func TestACOverwrite(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	ref := blobstore.Ref{Org: "a", Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte("k"))}
	put(t, s, ref, []byte("first value"))
	put(t, s, ref, []byte("second"))
	got, err := get(t, s, ref)
	if err != nil || string(got) != "second" {
		t.Fatalf("get = %q, %v", got, err)
	}
	if s.OrgBytes("a") != 6 || s.Len() != 1 {
		t.Errorf("after overwrite: bytes %d entries %d, want 6 and 1", s.OrgBytes("a"), s.Len())
	}
}

func blob(i int, size int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, size)
	copy(b, fmt.Sprintf("blob %d", i))
	return b
}

func TestHardQuotaEvictsInsideOrgThenRefuses(t *testing.T) {
	clk := newClock()
	s := openStore(t, t.TempDir(), Options{
		MinRetention: time.Hour,
		OrgQuotas:    map[string]Quota{"small": {Hard: 3000}},
		Now:          clk.Now,
	})
	waitReady(t, s)
	other := blob(100, 1000)
	put(t, s, cas("other", other), other)
	for i := range 3 {
		put(t, s, cas("small", blob(i, 1000)), blob(i, 1000))
	}
	// Everything is younger than the retention age: refuse.
	err := blobstore.PutBytes(context.Background(), s, cas("small", blob(3, 1000)), blob(3, 1000))
	if !errors.Is(err, blobstore.ErrQuotaExceeded) {
		t.Fatalf("put over hard quota = %v, want ErrQuotaExceeded", err)
	}
	if got := s.OrgBytes("small"); got != 3000 {
		t.Fatalf("org bytes = %d, want 3000", got)
	}
	// Older than the retention age: the org's least recently used goes.
	clk.Advance(2 * time.Hour)
	if _, err := get(t, s, cas("small", blob(0, 1000))); err != nil { // refresh blob 0
		t.Fatal(err)
	}
	put(t, s, cas("small", blob(3, 1000)), blob(3, 1000))
	if _, err := get(t, s, cas("small", blob(1, 1000))); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("least recently used blob 1 still there: %v", err)
	}
	for _, i := range []int{0, 2, 3} {
		if _, err := get(t, s, cas("small", blob(i, 1000))); err != nil {
			t.Errorf("blob %d: %v", i, err)
		}
	}
	if _, err := get(t, s, cas("other", other)); err != nil {
		t.Errorf("another org's blob was evicted: %v", err)
	}
	// A blob larger than the hard quota is refused before any byte is sent.
	if _, err := s.NewWriter(context.Background(), cas("small", blob(9, 4000)), 4000); !errors.Is(err, blobstore.ErrQuotaExceeded) {
		t.Errorf("NewWriter over quota = %v, want ErrQuotaExceeded", err)
	}
}

func TestSoftQuotaAndSizeLimit(t *testing.T) {
	clk := newClock()
	s := openStore(t, t.TempDir(), Options{
		MaxBytes:     5000,
		DefaultQuota: Quota{Soft: 2000},
		Now:          clk.Now,
	})
	waitReady(t, s)
	for i := range 4 {
		put(t, s, cas("a", blob(i, 1000)), blob(i, 1000))
		clk.Advance(time.Second)
	}
	if got := s.OrgBytes("a"); got != 2000 {
		t.Errorf("org above soft quota holds %d, want 2000", got)
	}
	for i := range 4 {
		put(t, s, cas("b", blob(10+i, 1000)), blob(10+i, 1000))
		put(t, s, cas("c", blob(20+i, 1000)), blob(20+i, 1000))
		clk.Advance(time.Second)
	}
	if st := s.Stats(); st.Bytes > 5000 {
		t.Errorf("store holds %d bytes, limit 5000", st.Bytes)
	}
	if st := s.Stats(); st.Evictions == 0 {
		t.Error("no evictions recorded")
	}
}

func TestRestartServesAtOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var refs []blobstore.Ref
	for i := range 50 {
		b := blob(i, 100+i)
		refs = append(refs, cas(fmt.Sprintf("org%d", i%3), b))
		put(t, s, refs[i], b)
	}
	ac := blobstore.Ref{Org: "org1", Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte("a"))}
	put(t, s, ac, []byte("result"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, dir, Options{})
	if got := s2.Len(); got != 51 {
		t.Fatalf("after restart the index holds %d entries, want 51", got)
	}
	for i, ref := range refs {
		got, err := get(t, s2, ref)
		if err != nil || !bytes.Equal(got, blob(i, 100+i)) {
			t.Fatalf("blob %d after restart: %v", i, err)
		}
	}
	if got, err := get(t, s2, ac); err != nil || string(got) != "result" {
		t.Fatalf("AC after restart: %q %v", got, err)
	}
}

func TestCrashWithoutSnapshotRebuilds(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	waitReady(t, s)
	var refs []blobstore.Ref
	for i := range 20 {
		refs = append(refs, cas("a", blob(i, 64)))
		put(t, s, refs[i], blob(i, 64))
	}
	if err := s.saveSnapshot(); err != nil {
		t.Fatal(err)
	}
	// After the snapshot: one more blob, one blob lost (as if evicted).
	late := cas("a", blob(99, 64))
	put(t, s, late, blob(99, 64))
	os.Remove(s.path(s.orgs[0], blobstore.KindCAS, &refs[0].Digest.Hash))
	// Crash: no Close, the snapshot is stale.
	s.stop()
	s.wg.Wait()
	s.dirf.Close()

	s2 := openStore(t, dir, Options{})
	// Before the walk ends, answers come from the filesystem.
	missing, err := s2.FindMissing(context.Background(), "a", blobstore.KindCAS, []blobstore.Digest{refs[0].Digest, refs[1].Digest, late.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]blobstore.Digest{refs[0].Digest}, missing); diff != "" {
		t.Errorf("FindMissing after crash (-want +got):\n%s", diff)
	}
	waitReady(t, s2)
	if got := s2.Len(); got != 20 {
		t.Errorf("after the walk the index holds %d entries, want 20", got)
	}
	if got := s2.OrgBytes("a"); got != 20*64 {
		t.Errorf("org bytes after walk = %d, want %d", got, 20*64)
	}
}

func TestCorruptSnapshotIsIgnored(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, cas("a", []byte("x")), []byte("x"))
	s.Close()
	p := filepath.Join(dir, "index")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o600)
	s2 := openStore(t, dir, Options{})
	if _, err := get(t, s2, cas("a", []byte("x"))); err != nil {
		t.Fatalf("blob after corrupt snapshot: %v", err)
	}
	waitReady(t, s2)
	if s2.Len() != 1 {
		t.Errorf("entries = %d, want 1", s2.Len())
	}
}

func TestConcurrentWriters(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{DefaultQuota: Quota{Hard: 64 * 1000}})
	waitReady(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				b := blob(i, 1000) // the same blobs from every writer
				if err := blobstore.PutBytes(context.Background(), s, cas(fmt.Sprintf("org%d", w%2), b), b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Stats().Bytes; got != 20*1000 {
		t.Errorf("physical bytes = %d, want %d", got, 20*1000)
	}
}

// TestRefsPages: paging through the index sees every entry once, with its
// org, kind and size, also after removals left holes.
func TestRefsPages(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	waitReady(t, s)
	want := map[blobstore.Ref]bool{}
	for i := range 25 {
		b := blob(i, 10+i)
		ref := cas(fmt.Sprintf("org%d", i%3), b)
		put(t, s, ref, b)
		want[ref] = true
	}
	ac := blobstore.Ref{Org: "org1", Kind: blobstore.KindAC, Digest: blobstore.Digest{Hash: blobstore.DigestOf([]byte("k")).Hash, Size: 3}}
	put(t, s, ac, []byte("res"))
	want[ac] = true
	gone := cas("org0", blob(0, 10))
	os.Remove(s.path(s.orgs[s.orgByName["org0"]], blobstore.KindCAS, &gone.Digest.Hash))
	s.forget(gone)
	delete(want, gone)

	got := map[blobstore.Ref]bool{}
	var pos uint32
	for {
		refs, next := s.Refs(pos, 4)
		for _, r := range refs {
			if got[r] {
				t.Fatalf("%s seen twice", r)
			}
			got[r] = true
		}
		if next == 0 {
			break
		}
		pos = next
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Refs (-want +got):\n%s", diff)
	}
}
