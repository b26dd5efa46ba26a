package s3

import (
	"fmt"
	"sync"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// ledger is the store's record of what the bucket holds, per org: it
// answers existence without asking the service, and bounds what each org
// holds in the bucket by its quota (least recently used first, never
// anything used within the minimum retention age).
//
// Until the first listing of the bucket is complete, an absent entry means
// "unknown" and the store asks the service; afterwards the ledger is
// authoritative (a periodic listing picks up what other replicas wrote).
type ledger struct {
	minRetention int64 // seconds
	quotaOf      func(dir string) blobstore.Quota

	mu       sync.Mutex
	orgs     map[string]*orgLedger // by org directory name
	complete bool
	gen      uint32 // current listing
}

type itemKey struct {
	kind blobstore.Kind
	hash blobstore.Hash
}

type item struct {
	key        itemKey
	size       int64
	atime      int64 // unix seconds of the last use
	gen        uint32
	prev, next *item // prev: more recently used
}

type orgLedger struct {
	items      map[itemKey]*item
	head, tail *item
	bytes      int64
	pending    int64 // bytes of uploads in progress
	quota      blobstore.Quota
}

// victim is an object the ledger dropped to make room; the store deletes it.
type victim struct {
	dir string
	key itemKey
}

func newLedger(minRetention int64, quotaOf func(dir string) blobstore.Quota) *ledger {
	return &ledger{minRetention: minRetention, quotaOf: quotaOf, orgs: map[string]*orgLedger{}}
}

func (l *ledger) orgLocked(dir string) *orgLedger {
	o := l.orgs[dir]
	if o == nil {
		o = &orgLedger{items: map[itemKey]*item{}, quota: l.quotaOf(dir)}
		l.orgs[dir] = o
	}
	return o
}

func (o *orgLedger) unlink(it *item) {
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		o.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		o.tail = it.prev
	}
	it.prev, it.next = nil, nil
}

func (o *orgLedger) pushFront(it *item) {
	it.prev, it.next = nil, o.head
	if o.head != nil {
		o.head.prev = it
	}
	o.head = it
	if o.tail == nil {
		o.tail = it
	}
}

// insertByAge places it by its atime, walking from the tail (listings come
// in key order, not age order).
func (o *orgLedger) insertByAge(it *item) {
	j := o.tail
	for j != nil && j.atime < it.atime {
		j = j.prev
	}
	if j == nil {
		o.pushFront(it)
		return
	}
	it.prev, it.next = j, j.next
	if j.next != nil {
		j.next.prev = it
	} else {
		o.tail = it
	}
	j.next = it
}

func (o *orgLedger) remove(it *item) {
	o.unlink(it)
	delete(o.items, it.key)
	o.bytes -= it.size
}

// state is what the ledger knows about one blob.
type state int

const (
	unknown state = iota
	present
	absent
)

// lookup says whether dir holds (kind, d), refreshing it if so. A CAS
// digest with a size must match the size held.
func (l *ledger) lookup(dir string, kind blobstore.Kind, d blobstore.Digest, now int64) (state, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o := l.orgs[dir]; o != nil {
		if it := o.items[itemKey{kind, d.Hash}]; it != nil {
			if kind == blobstore.KindCAS && d.Size >= 0 && it.size != d.Size {
				return absent, 0
			}
			it.atime = max(it.atime, now)
			o.unlink(it)
			o.pushFront(it)
			return present, it.size
		}
	}
	if l.complete {
		return absent, 0
	}
	return unknown, 0
}

// add records that dir holds key (replacing what it held under it).
func (l *ledger) add(dir string, key itemKey, size, now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addLocked(dir, key, size, now)
}

func (l *ledger) addLocked(dir string, key itemKey, size, now int64) *item {
	o := l.orgLocked(dir)
	if it := o.items[key]; it != nil {
		o.remove(it)
	}
	it := &item{key: key, size: size, atime: now, gen: l.gen}
	o.items[key] = it
	o.pushFront(it)
	o.bytes += size
	return it
}

// forget drops key of dir (the service said it is gone).
func (l *ledger) forget(dir string, key itemKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if o := l.orgs[dir]; o != nil {
		if it := o.items[key]; it != nil {
			o.remove(it)
		}
	}
}

func (l *ledger) evictable(it *item, now int64) bool { return now-it.atime >= l.minRetention }

// reserve makes room under dir's hard quota for an upload of size bytes,
// dropping least recently used entries (returned for deletion). It refuses
// with ErrQuotaExceeded, dropping nothing, when that is not enough.
func (l *ledger) reserve(dir string, key itemKey, size, now int64) ([]victim, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.orgLocked(dir)
	hard := o.quota.Hard
	if hard <= 0 {
		o.pending += size
		return nil, nil
	}
	if size > hard {
		return nil, fmt.Errorf("%w: %d bytes, org quota %d", blobstore.ErrQuotaExceeded, size, hard)
	}
	need := o.bytes + o.pending + size - hard
	if old := o.items[key]; old != nil {
		need -= old.size // replaced on commit
	}
	var drop []*item
	for it := o.tail; need > 0 && it != nil; it = it.prev {
		if it.key == key {
			continue
		}
		if !l.evictable(it, now) {
			break
		}
		drop = append(drop, it)
		need -= it.size
	}
	if need > 0 {
		return nil, fmt.Errorf("%w: org holds %d bytes in object storage, quota %d, nothing older than the retention age to evict", blobstore.ErrQuotaExceeded, o.bytes+o.pending, hard)
	}
	vs := make([]victim, len(drop))
	for i, it := range drop {
		o.remove(it)
		vs[i] = victim{dir: dir, key: it.key}
	}
	o.pending += size
	return vs, nil
}

// release gives back a reservation of an upload that did not complete.
func (l *ledger) release(dir string, size int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.orgLocked(dir).pending -= size
}

// commit turns a reservation into an entry and applies the soft quota.
func (l *ledger) commit(dir string, key itemKey, size, now int64) []victim {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.orgLocked(dir)
	o.pending -= size
	it := l.addLocked(dir, key, size, now)
	return l.trimLocked(dir, o, it, now)
}

// trimLocked evicts above the soft quota (or the hard one, which a listing
// may reveal exceeded), sparing keep.
func (l *ledger) trimLocked(dir string, o *orgLedger, keep *item, now int64) []victim {
	limit := o.quota.Soft
	if limit <= 0 {
		limit = o.quota.Hard
	}
	if limit <= 0 {
		return nil
	}
	var vs []victim
	for it := o.tail; o.bytes > limit && it != nil; {
		prev := it.prev
		if it != keep {
			if !l.evictable(it, now) {
				break
			}
			o.remove(it)
			vs = append(vs, victim{dir: dir, key: it.key})
		}
		it = prev
	}
	return vs
}

// beginListing starts a listing generation.
func (l *ledger) beginListing() {
	l.mu.Lock()
	l.gen++
	l.mu.Unlock()
}

// seen records an object found by the listing.
func (l *ledger) seen(dir string, key itemKey, size, mtime int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.orgLocked(dir)
	if it := o.items[key]; it != nil {
		it.gen = l.gen
		if it.size != size {
			o.bytes += size - it.size
			it.size = size
		}
		return
	}
	it := &item{key: key, size: size, atime: mtime, gen: l.gen}
	o.items[key] = it
	o.insertByAge(it)
	o.bytes += size
}

// endListing drops the entries the finished listing did not see (and that
// were not written during it) and returns what the quotas now require
// evicting; markComplete follows once that is done.
func (l *ledger) endListing(now int64) []victim {
	l.mu.Lock()
	defer l.mu.Unlock()
	var vs []victim
	for dir, o := range l.orgs {
		for it := o.head; it != nil; {
			next := it.next
			if it.gen != l.gen {
				o.remove(it)
			}
			it = next
		}
		vs = append(vs, l.trimLocked(dir, o, nil, now)...)
	}
	return vs
}

// markComplete makes the ledger authoritative for existence answers.
func (l *ledger) markComplete() {
	l.mu.Lock()
	l.complete = true
	l.mu.Unlock()
}

// stats returns the entries and bytes the ledger holds.
func (l *ledger) stats() (entries int, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.orgs {
		entries += len(o.items)
		bytes += o.bytes
	}
	return entries, bytes
}

func (l *ledger) isComplete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.complete
}
