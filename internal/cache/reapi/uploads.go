package reapi

import (
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// upload is a ByteStream write in progress, kept between streams so that a
// client can resume it after QueryWriteStatus.
type upload struct {
	key    uploadKey
	w      blobstore.Writer
	offset int64
	busy   bool // a stream is writing it
	last   time.Time
}

type uploadKey struct {
	org      string
	resource string
}

// uploads holds the resumable uploads.
type uploads struct {
	mu sync.Mutex
	m  map[uploadKey]*upload
}

func newUploads() *uploads { return &uploads{m: map[uploadKey]*upload{}} }

// acquire returns the upload of key marked busy, or nil if there is none.
// ok is false when another stream is writing it.
func (u *uploads) acquire(key uploadKey) (up *upload, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up = u.m[key]
	if up == nil {
		return nil, true
	}
	if up.busy {
		return nil, false
	}
	up.busy = true
	return up, true
}

// add registers a new busy upload, replacing (and closing) any old one.
func (u *uploads) add(up *upload) {
	u.mu.Lock()
	old := u.m[up.key]
	up.busy = true
	u.m[up.key] = up
	u.mu.Unlock()
	if old != nil && old != up {
		old.w.Close()
	}
}

// release marks up idle, keeping it for a resumption.
func (u *uploads) release(up *upload) {
	u.mu.Lock()
	up.busy = false
	up.last = time.Now()
	u.mu.Unlock()
}

// remove forgets up; the caller closes its writer.
func (u *uploads) remove(up *upload) {
	u.mu.Lock()
	if u.m[up.key] == up {
		delete(u.m, up.key)
	}
	u.mu.Unlock()
}

// offset returns the bytes received so far for key, if it is known.
func (u *uploads) offset(key uploadKey) (int64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up := u.m[key]
	if up == nil {
		return 0, false
	}
	return up.offset, true
}

// Sweep closes uploads idle since before cutoff and returns how many.
func (u *uploads) sweep(cutoff time.Time) int {
	u.mu.Lock()
	var stale []*upload
	for k, up := range u.m {
		if !up.busy && up.last.Before(cutoff) {
			stale = append(stale, up)
			delete(u.m, k)
		}
	}
	u.mu.Unlock()
	for _, up := range stale {
		up.w.Close()
	}
	return len(stale)
}

func (u *uploads) closeAll() { u.sweep(time.Now().Add(time.Hour)) }
