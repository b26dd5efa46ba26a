package disk

import (
	"encoding/binary"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// entry is one (org, kind, hash) the store holds. Entries live in chunks of
// a slab and refer to each other by index (0 is nil), which keeps an entry at
// 64 bytes and the hash table at 4 bytes a slot.
type entry struct {
	hash   blobstore.Hash
	size   int64  // the blob's size
	stored int64  // bytes its file takes (less than size when compressed)
	atime  uint32 // seconds since epoch (below)
	prev   uint32 // towards the most recently used
	next   uint32 // towards the least recently used; the free list when unused
	org    uint16
	kind   blobstore.Kind
	flags  uint8
}

const (
	flagSeen  = 1 << 0 // seen by the current rebuild walk (or written during it)
	flagInUse = 1 << 1
	flagZstd  = 1 << 2 // stored compressed, in <hash>.zst
)

const chunkBits = 13
const chunkLen = 1 << chunkBits

// index maps (org, kind, hash) to entries and keeps each org's LRU list. It is
// not safe for concurrent use; Store guards it with a mutex.
type index struct {
	chunks [][]entry
	n      uint32 // entries handed out, including index 0 and freed ones
	free   uint32 // head of the free list
	live   int
	table  []uint32 // open addressing, linear probing; 0 = empty
	mask   uint64
}

func newIndex() *index {
	ix := &index{}
	ix.table = make([]uint32, 1024)
	ix.mask = uint64(len(ix.table) - 1)
	ix.alloc() // index 0 is nil
	return ix
}

func (ix *index) at(i uint32) *entry { return &ix.chunks[i>>chunkBits][i&(chunkLen-1)] }

func (ix *index) alloc() uint32 {
	if ix.free != 0 {
		i := ix.free
		ix.free = ix.at(i).next
		*ix.at(i) = entry{}
		return i
	}
	i := ix.n
	if int(i>>chunkBits) == len(ix.chunks) {
		ix.chunks = append(ix.chunks, make([]entry, chunkLen))
	}
	ix.n++
	return i
}

func slotOf(h *blobstore.Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// find returns the entry of (org, kind, hash), or 0.
func (ix *index) find(org uint16, kind blobstore.Kind, h *blobstore.Hash) uint32 {
	for s := slotOf(h) & ix.mask; ; s = (s + 1) & ix.mask {
		i := ix.table[s]
		if i == 0 {
			return 0
		}
		e := ix.at(i)
		if e.hash == *h && e.org == org && e.kind == kind {
			return i
		}
	}
}

// other returns an entry of kind and hash held by an org other than org, or 0.
func (ix *index) other(org uint16, kind blobstore.Kind, h *blobstore.Hash) uint32 {
	for s := slotOf(h) & ix.mask; ; s = (s + 1) & ix.mask {
		i := ix.table[s]
		if i == 0 {
			return 0
		}
		e := ix.at(i)
		if e.hash == *h && e.org != org && e.kind == kind {
			return i
		}
	}
}

// insert adds a new entry (the caller has checked it is absent) and returns
// its index.
func (ix *index) insert(org uint16, kind blobstore.Kind, h *blobstore.Hash, size int64, atime uint32) uint32 {
	if uint64(ix.live+1)*4 > uint64(len(ix.table))*3 {
		ix.grow()
	}
	i := ix.alloc()
	e := ix.at(i)
	*e = entry{hash: *h, size: size, stored: size, atime: atime, org: org, kind: kind, flags: flagInUse}
	ix.place(i)
	ix.live++
	return i
}

func (ix *index) place(i uint32) {
	s := slotOf(&ix.at(i).hash) & ix.mask
	for ix.table[s] != 0 {
		s = (s + 1) & ix.mask
	}
	ix.table[s] = i
}

func (ix *index) grow() {
	old := ix.table
	ix.table = make([]uint32, 2*len(old))
	ix.mask = uint64(len(ix.table) - 1)
	for _, i := range old {
		if i != 0 {
			ix.place(i)
		}
	}
}

// remove deletes entry i from the table (backward-shift deletion) and frees
// it. The caller has unlinked it from its LRU list.
func (ix *index) remove(i uint32) {
	e := ix.at(i)
	s := slotOf(&e.hash) & ix.mask
	for ix.table[s] != i {
		s = (s + 1) & ix.mask
	}
	// Shift back every following entry of the run that may move into the hole.
	hole := s
	for j := (s + 1) & ix.mask; ix.table[j] != 0; j = (j + 1) & ix.mask {
		home := slotOf(&ix.at(ix.table[j]).hash) & ix.mask
		// The entry at j may fill the hole if its home is not in (hole, j].
		if (j-home)&ix.mask >= (j-hole)&ix.mask {
			ix.table[hole] = ix.table[j]
			hole = j
		}
	}
	ix.table[hole] = 0
	*e = entry{next: ix.free}
	ix.free = i
	ix.live--
}

// lru is one org's list, most recently used first.
type lru struct {
	head, tail uint32
}

func (ix *index) pushFront(l *lru, i uint32) {
	e := ix.at(i)
	e.prev, e.next = 0, l.head
	if l.head != 0 {
		ix.at(l.head).prev = i
	}
	l.head = i
	if l.tail == 0 {
		l.tail = i
	}
}

func (ix *index) unlink(l *lru, i uint32) {
	e := ix.at(i)
	if e.prev != 0 {
		ix.at(e.prev).next = e.next
	} else {
		l.head = e.next
	}
	if e.next != 0 {
		ix.at(e.next).prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = 0, 0
}

// touch moves i to the front of l.
func (ix *index) touch(l *lru, i uint32, now uint32) {
	e := ix.at(i)
	if e.atime < now {
		e.atime = now
	}
	if l.head == i {
		return
	}
	ix.unlink(l, i)
	ix.pushFront(l, i)
}

// pushBack appends i to the end of l (least recently used).
func (ix *index) pushBack(l *lru, i uint32) {
	e := ix.at(i)
	e.prev, e.next = l.tail, 0
	if l.tail != 0 {
		ix.at(l.tail).next = i
	}
	l.tail = i
	if l.head == 0 {
		l.head = i
	}
}

// insertSorted puts i into l ordered by atime (used when loading entries
// whose order is not known, newest first). It walks from the end whose
// atime is nearest, which is cheap for the mostly ordered input of a walk.
func (ix *index) insertSorted(l *lru, i uint32) {
	at := ix.at(i).atime
	if l.head == 0 || ix.at(l.head).atime <= at {
		ix.pushFront(l, i)
		return
	}
	// Find the first entry from the tail whose atime is >= at and insert
	// after it; give up after a few steps (the order is only a hint).
	j := l.tail
	for steps := 0; steps < 64 && j != l.head && ix.at(j).atime < at; steps++ {
		j = ix.at(j).prev
	}
	e := ix.at(i)
	e.prev = j
	e.next = ix.at(j).next
	if e.next != 0 {
		ix.at(e.next).prev = i
	} else {
		l.tail = i
	}
	ix.at(j).next = i
}
