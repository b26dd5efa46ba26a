package actionscache

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Entry is one saved cache: an archive in the org's CAS under a key,
// version and scope (branch).
type Entry struct {
	Org     string    `json:"org"`
	Scope   string    `json:"scope"`
	Key     string    `json:"key"`
	Version string    `json:"version"`
	Hash    string    `json:"hash"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

func (e *Entry) digest() blobstore.Digest {
	h, _ := blobstore.ParseHash(e.Hash)
	return blobstore.Digest{Hash: h, Size: e.Size}
}

// entries is the index of saved caches, kept in memory and in an
// append-only journal that is synced before a save is acknowledged.
type entries struct {
	mu      sync.Mutex
	byOrg   map[string][]*Entry
	journal *os.File
}

func openEntries(path string) (*entries, error) {
	es := &entries{byOrg: map[string][]*Entry{}}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open actions cache journal: %w", err)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Org == "" {
			continue // a torn last line after a crash was never acknowledged
		}
		es.addLocked(&e)
	}
	es.journal = f
	return es, nil
}

func (es *entries) close() error { return es.journal.Close() }

func (es *entries) addLocked(e *Entry) {
	list := es.byOrg[e.Org]
	list = slices.DeleteFunc(list, func(x *Entry) bool {
		return x.Scope == e.Scope && x.Key == e.Key && x.Version == e.Version
	})
	es.byOrg[e.Org] = append(list, e)
}

// add records e durably.
func (es *entries) add(e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	if _, err := es.journal.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("record cache entry: %w", err)
	}
	if err := es.journal.Sync(); err != nil {
		return fmt.Errorf("record cache entry: %w", err)
	}
	es.addLocked(e)
	return nil
}

// remove forgets an entry whose archive is gone (it is not journaled: the
// next lookup finds the archive gone again).
func (es *entries) remove(e *Entry) {
	es.mu.Lock()
	defer es.mu.Unlock()
	es.byOrg[e.Org] = slices.DeleteFunc(es.byOrg[e.Org], func(x *Entry) bool { return x == e })
}

// exists reports whether an entry with exactly key and version exists in scope.
func (es *entries) exists(org, scope, key, version string) bool {
	es.mu.Lock()
	defer es.mu.Unlock()
	for _, e := range es.byOrg[org] {
		if e.Scope == scope && e.Key == key && e.Version == version {
			return true
		}
	}
	return false
}

// match lists the candidate entries for keys (the primary key, then the
// restore keys) and version, best first: scope by scope in order, and in
// each scope key by key, an exact match first, then the entries whose key
// has the key as prefix, newest first.
func (es *entries) match(org string, scopes, keys []string, version string) []*Entry {
	es.mu.Lock()
	defer es.mu.Unlock()
	list := es.byOrg[org]
	var out []*Entry
	for _, s := range scopes {
		for _, k := range keys {
			for _, e := range list {
				if e.Scope == s && e.Key == k && e.Version == version {
					out = append(out, e)
				}
			}
			var cands []*Entry
			for _, e := range list {
				if e.Scope == s && e.Version == version && strings.HasPrefix(e.Key, k) && e.Key != k {
					cands = append(cands, e)
				}
			}
			slices.SortStableFunc(cands, func(a, b *Entry) int { return b.Created.Compare(a.Created) })
			out = append(out, cands...)
		}
	}
	return out
}

// list returns the entries of org whose key is key (for the v1 diagnostics call).
func (es *entries) list(org, key string) []*Entry {
	es.mu.Lock()
	defer es.mu.Unlock()
	var out []*Entry
	for _, e := range es.byOrg[org] {
		if e.Key == key {
			out = append(out, e)
		}
	}
	return out
}
