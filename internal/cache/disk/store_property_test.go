package disk

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// storeChecker runs operations against a Store with tight quotas and checks
// the invariants that make it safe to share: quotas and the size limit are
// never exceeded, nothing used within the retention age is ever evicted,
// what is read is what was written.
type storeChecker struct {
	t        testing.TB
	dir      string
	clk      *clock
	opts     Options
	s        *Store
	lastUsed map[blobstore.Ref]time.Time // successful puts and reads
}

const (
	propRetention = time.Minute
	propHard      = 4000
	propMax       = 9000
)

func newStoreChecker(t testing.TB) *storeChecker {
	c := &storeChecker{t: t, dir: t.TempDir(), clk: newClock(), lastUsed: map[blobstore.Ref]time.Time{}}
	c.opts = Options{
		MaxBytes:     propMax,
		MinRetention: propRetention,
		DefaultQuota: Quota{Soft: 3000, Hard: propHard},
		Now:          c.clk.Now,
		NoSync:       true, // durability is not what these tests check
	}
	c.open()
	return c
}

func (c *storeChecker) open() {
	s, err := Open(c.dir, c.opts)
	if err != nil {
		c.t.Fatal(err)
	}
	c.s = s
}

func (c *storeChecker) close() { c.s.Close() }

func propBlob(i, size int) []byte { return blob(i, 1+size%1500) }

func (c *storeChecker) put(org string, i, size int) {
	b := propBlob(i, size)
	ref := cas(org, b)
	if i%4 == 0 {
		ref = blobstore.Ref{Org: org, Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte{byte(i)})}
	}
	err := blobstore.PutBytes(context.Background(), c.s, ref, b)
	switch {
	case err == nil:
		c.lastUsed[ref] = c.clk.Now()
	case errors.Is(err, blobstore.ErrQuotaExceeded), errors.Is(err, blobstore.ErrTooLarge):
		if ref.Kind == blobstore.KindAC {
			delete(c.lastUsed, ref) // a refused overwrite drops the old value
		}
	default:
		c.t.Fatalf("put %s: %v", ref, err)
	}
}

func (c *storeChecker) get(org string, i, size int) {
	b := propBlob(i, size)
	ref := cas(org, b)
	if i%4 == 0 {
		ref = blobstore.Ref{Org: org, Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte{byte(i)})}
	}
	r, _, err := c.s.Get(context.Background(), ref, 0, 0)
	if errors.Is(err, blobstore.ErrNotFound) {
		if used, ok := c.lastUsed[ref]; ok && ref.Kind == blobstore.KindCAS && c.clk.Now().Sub(used) < propRetention {
			c.t.Fatalf("%s used %v ago was evicted inside the retention age", ref, c.clk.Now().Sub(used))
		}
		delete(c.lastUsed, ref)
		return
	}
	if err != nil {
		c.t.Fatalf("get %s: %v", ref, err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(r)
	r.Close()
	if ref.Kind == blobstore.KindCAS && !bytes.Equal(buf.Bytes(), b) {
		c.t.Fatalf("get %s: wrong content", ref)
	}
	c.lastUsed[ref] = c.clk.Now()
}

func (c *storeChecker) check() {
	st := c.s.Stats()
	if st.Bytes > propMax {
		c.t.Fatalf("store holds %d bytes, limit %d", st.Bytes, propMax)
	}
	for _, org := range []string{"a", "b", "c"} {
		if got := c.s.OrgBytes(org); got > propHard {
			c.t.Fatalf("org %s holds %d bytes, hard quota %d", org, got, propHard)
		}
	}
}

func TestStoreProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := newStoreChecker(t)
		defer func() { c.close() }()
		org := rapid.SampledFrom([]string{"a", "b", "c"})
		rt.Repeat(map[string]func(*rapid.T){
			"put": func(rt *rapid.T) {
				c.put(org.Draw(rt, "org"), rapid.IntRange(0, 30).Draw(rt, "blob"), rapid.IntRange(0, 2000).Draw(rt, "size"))
			},
			"get": func(rt *rapid.T) {
				c.get(org.Draw(rt, "org"), rapid.IntRange(0, 30).Draw(rt, "blob"), rapid.IntRange(0, 2000).Draw(rt, "size"))
			},
			"advance": func(rt *rapid.T) {
				c.clk.Advance(time.Duration(rapid.IntRange(1, 90).Draw(rt, "seconds")) * time.Second)
			},
			"restart": func(rt *rapid.T) {
				if rapid.IntRange(0, 9).Draw(rt, "rarely") != 0 {
					rt.Skip("restarts are slow; keep them rare")
				}
				c.close()
				c.open()
			},
			"": func(rt *rapid.T) { c.check() },
		})
	})
}

// FuzzStoreOps reads operations from the fuzzer's bytes (the eviction
// fuzzer the threat model asks for): the same invariants must hold.
func FuzzStoreOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 2, 3, 1, 1, 2, 2, 50, 0, 0, 5, 9})
	f.Add(bytes.Repeat([]byte{0, 7, 200, 0, 8, 250, 2, 70}, 20))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 600 {
			return
		}
		c := newStoreChecker(t)
		defer c.close()
		orgs := []string{"a", "b", "c"}
		for len(ops) >= 3 {
			op, x, y := ops[0], int(ops[1]), int(ops[2])
			ops = ops[3:]
			switch op % 5 {
			case 0:
				c.put(orgs[x%3], x%31, y*8)
			case 1:
				c.get(orgs[x%3], x%31, y*8)
			case 2:
				c.clk.Advance(time.Duration(x%90+1) * time.Second)
			case 3:
				c.close()
				c.open()
			case 4:
				c.get(orgs[(x+1)%3], x%31, y*8) // another org: never sees it unless it put it
			}
			c.check()
		}
	})
}

// FuzzSnapshot feeds arbitrary bytes to the snapshot reader: it must
// return an error or a consistent index, never panic.
func FuzzSnapshot(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		f.Fatal(err)
	}
	put(f, s, cas("a", []byte("x")), []byte("x"))
	s.Close()
	if b, err := os.ReadFile(dir + "/index"); err == nil && len(b) > 4 {
		f.Add(b[:len(b)-4]) // without its checksum, as readSnapshot sees it
	}
	f.Add([]byte("NIMBUSIX"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Store{ix: newIndex(), orgByName: map[string]uint16{"a": 0}, orgs: []*orgState{{name: "a"}}}
		n, _ := s.readSnapshot(bufio.NewReader(bytes.NewReader(data)))
		if n != s.ix.live {
			t.Fatalf("loaded %d, index holds %d", n, s.ix.live)
		}
		// An org's bytes are what its blobs take on disk.
		var total int64
		for i := s.orgs[0].lru.head; i != 0; i = s.ix.at(i).next {
			e := s.ix.at(i)
			if e.flags&flagZstd == 0 && e.stored != e.size {
				t.Fatalf("a plain blob of %d bytes loaded as stored in %d", e.size, e.stored)
			}
			total += e.stored
		}
		if total != s.orgs[0].bytes {
			t.Fatalf("org bytes %d, list sums to %d", s.orgs[0].bytes, total)
		}
	})
}
