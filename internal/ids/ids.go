// Package ids makes the identifiers of Nimbus's records: a short prefix
// naming the kind, then 26 lowercase base32 characters whose first ten
// encode the creation time in milliseconds, so ids sort by creation time
// and can drive the queue's order and pagination.
package ids

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"sync"
	"time"
)

var enc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

var (
	mu   sync.Mutex
	last [16]byte
)

// New returns a new id such as "job_01jd…". Ids made by one process are
// strictly increasing, even within one millisecond.
func New(prefix string) string {
	return prefix + "_" + newAt(time.Now())
}

func newAt(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	rand.Read(b[6:])
	mu.Lock()
	// Same millisecond as the previous id: increment it instead, so order
	// within a process never depends on the random part.
	if string(b[:6]) <= string(last[:6]) {
		b = last
		for i := 15; i >= 6; i-- {
			b[i]++
			if b[i] != 0 {
				break
			}
		}
	}
	last = b
	mu.Unlock()
	return strings.ToLower(enc.EncodeToString(b[:]))
}

// Valid reports whether s looks like an id with this prefix: it bounds
// what reaches the database from a URL.
func Valid(prefix, s string) bool {
	rest, ok := strings.CutPrefix(s, prefix+"_")
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if !strings.ContainsRune("0123456789abcdefghjkmnpqrstvwxyz", c) {
			return false
		}
	}
	return true
}
