package disk

import (
	"runtime"
	"testing"

	"pgregory.net/rapid"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

type modelKey struct {
	org  uint16
	kind blobstore.Kind
	hash blobstore.Hash
}

// TestIndexMatchesModel drives the hash table and LRU lists with random
// inserts, lookups, touches and removals (with hashes that collide on their
// table slot) and compares them with a map and slices.
func TestIndexMatchesModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ix := newIndex()
		model := map[modelKey]uint32{}
		lists := make([]lru, 3)
		order := make([][]uint32, 3) // most recent first
		genKey := rapid.Custom(func(t *rapid.T) modelKey {
			var h blobstore.Hash
			// Few distinct slot prefixes: long probe runs and wrap-around.
			h[0] = rapid.Byte().Draw(t, "slot")
			h[31] = rapid.ByteRange(0, 3).Draw(t, "tail")
			return modelKey{org: rapid.Uint16Range(0, 2).Draw(t, "org"), kind: blobstore.Kind(rapid.IntRange(1, 2).Draw(t, "kind")), hash: h}
		})
		removeFrom := func(o uint16, i uint32) {
			for k, v := range order[o] {
				if v == i {
					order[o] = append(order[o][:k], order[o][k+1:]...)
					return
				}
			}
		}
		t.Repeat(map[string]func(*rapid.T){
			"insert": func(t *rapid.T) {
				k := genKey.Draw(t, "key")
				if _, ok := model[k]; ok {
					t.Skip("present")
				}
				i := ix.insert(k.org, k.kind, &k.hash, 1, 0)
				ix.pushFront(&lists[k.org], i)
				model[k] = i
				order[k.org] = append([]uint32{i}, order[k.org]...)
			},
			"remove": func(t *rapid.T) {
				k := genKey.Draw(t, "key")
				i, ok := model[k]
				if !ok {
					t.Skip("absent")
				}
				ix.unlink(&lists[k.org], i)
				ix.remove(i)
				delete(model, k)
				removeFrom(k.org, i)
			},
			"touch": func(t *rapid.T) {
				k := genKey.Draw(t, "key")
				i, ok := model[k]
				if !ok {
					t.Skip("absent")
				}
				ix.touch(&lists[k.org], i, 5)
				removeFrom(k.org, i)
				order[k.org] = append([]uint32{i}, order[k.org]...)
			},
			"": func(t *rapid.T) {
				if ix.live != len(model) {
					t.Fatalf("live = %d, model has %d", ix.live, len(model))
				}
				for k, i := range model {
					if got := ix.find(k.org, k.kind, &k.hash); got != i {
						t.Fatalf("find(%v) = %d, want %d", k, got, i)
					}
					other := ix.other(k.org, k.kind, &k.hash)
					if other != 0 && ix.at(other).org == k.org {
						t.Fatalf("other() returned the same org")
					}
				}
				for o := range lists {
					var got []uint32
					for i := lists[o].head; i != 0; i = ix.at(i).next {
						got = append(got, i)
					}
					if len(got) != len(order[o]) {
						t.Fatalf("org %d list %v, want %v", o, got, order[o])
					}
					for k := range got {
						if got[k] != order[o][k] {
							t.Fatalf("org %d list %v, want %v", o, got, order[o])
						}
					}
				}
			},
		})
	})
}

// BenchmarkIndexMemory reports the index's memory per entry with a million
// entries (the goal is at most 100 bytes).
func BenchmarkIndexMemory(b *testing.B) {
	const n = 1_000_000
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ix := newIndex()
		var l lru
		var h blobstore.Hash
		for i := range n {
			h[0], h[1], h[2], h[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
			h[8] = byte(i * 7)
			ix.pushFront(&l, ix.insert(0, blobstore.KindCAS, &h, int64(i), 0))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/entry")
		runtime.KeepAlive(ix)
	}
}
