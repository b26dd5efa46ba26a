package registry

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// flightKey names one upstream fetch of a blob. Fetches with the
// server's (or no) credentials are shared by every org; an org's private
// credentials make its own flights.
type flightKey struct {
	upstream string
	identity string
	hash     blobstore.Hash
}

// flights runs upstream blob fetches: one per key however many clients
// ask, each streamed to every client as it arrives. A fetch writes the
// upstream's bytes once into a spool file (unlinked at once, read by
// every client at its own pace) and, in the same pass, into the store
// under the org that started it; other orgs that joined get their copy
// from the spool once the blob is verified. The last byte is held back
// from every client until the whole blob has hashed to its digest, so no
// client ever receives a complete wrong blob: a mismatch (or a cut or
// stalled upstream) aborts every client's response instead, and nothing
// is committed to the store.
type flights struct {
	r      *Registry
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	m  map[flightKey]*flight
	// perOrg counts each org's flights, bounded by maxFlightsPerOrg.
	perOrg map[string]int
}

// maxFlightsPerOrg bounds the upstream fetches one org can have running
// at once: a client that asks for many blobs and hangs up cannot make the
// server fetch without end (a fetch runs to its end for the others and
// the cache even when its first client leaves).
const maxFlightsPerOrg = 64

func newFlights(r *Registry) *flights {
	ctx, cancel := context.WithCancel(context.Background())
	return &flights{r: r, ctx: ctx, cancel: cancel, m: map[flightKey]*flight{}, perOrg: map[string]int{}}
}

// flight is one fetch.
type flight struct {
	key    flightKey
	leader string // the org the fetch stores for
	file   *os.File
	cancel context.CancelCauseFunc

	// started is closed once the size is known or the fetch failed.
	started chan struct{}

	mu       sync.Mutex
	size     int64 // -1 until known
	written  int64
	verified bool
	err      error
	done     bool
	storing  bool
	changed  chan struct{} // closed and replaced on every change
	refs     int           // readers, and one for the fetch
	orgs     []string      // orgs that want a copy; orgs[0] is the leader
}

// join returns the flight of key, starting it (with p's repository and
// cr) if none runs. The caller must release it.
func (fs *flights) join(p repo, cr creds, d Digest) (*flight, error) {
	key := flightKey{upstream: p.Up.cfg.Name, identity: cr.id, hash: d.Hash}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		f.mu.Lock()
		f.refs++
		if !contains(f.orgs, p.Org) {
			f.orgs = append(f.orgs, p.Org)
		}
		f.mu.Unlock()
		return f, nil
	}
	if fs.ctx.Err() != nil {
		return nil, fmt.Errorf("%w: registry closing", blobstore.ErrUnavailable)
	}
	if fs.perOrg[p.Org] >= maxFlightsPerOrg {
		return nil, ociError(http.StatusTooManyRequests, codeTooManyRequests, "more than %d blobs being fetched for this org at once; retry", maxFlightsPerOrg)
	}
	file, err := os.CreateTemp(fs.r.o.TempDir, "fetch-")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	os.Remove(file.Name()) // readers hold the descriptor; nothing is left on a crash
	ctx, cancel := context.WithCancelCause(fs.ctx)
	f := &flight{key: key, leader: p.Org, file: file, cancel: cancel, started: make(chan struct{}), size: -1,
		changed: make(chan struct{}), refs: 2, orgs: []string{p.Org}}
	fs.m[key] = f
	fs.perOrg[p.Org]++
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		fs.run(ctx, f, p, cr, d)
	}()
	return f, nil
}

// closeAll fails every flight and waits for them.
func (fs *flights) closeAll() {
	fs.cancel()
	fs.wg.Wait()
}

// inFlight reports how many fetches run (for tests and metrics).
func (fs *flights) inFlight() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.m)
}

var errIdle = errors.New("upstream sent nothing for too long")

// run fetches the blob and ends the flight.
func (fs *flights) run(ctx context.Context, f *flight, p repo, cr creds, d Digest) {
	err := fs.fetch(ctx, f, p, cr, d)
	fs.mu.Lock()
	if fs.m[f.key] == f {
		delete(fs.m, f.key)
	}
	if fs.perOrg[f.leader]--; fs.perOrg[f.leader] <= 0 {
		delete(fs.perOrg, f.leader)
	}
	fs.mu.Unlock()
	f.finish(err)
	if err != nil {
		fs.r.log.Warn("upstream blob fetch failed", "upstream", p.Up.cfg.Name, "repository", p.Remote, "digest", shortHex(d.Hash), "err", err)
	}
	f.release()
	f.cancel(nil)
}

func (fs *flights) fetch(ctx context.Context, f *flight, p repo, cr creds, d Digest) error {
	r := fs.r
	idle := time.AfterFunc(r.o.UpstreamIdleTimeout, func() { f.cancel(errIdle) })
	defer idle.Stop()
	resp, err := p.Up.do(ctx, cr, http.MethodGet, p.Remote, "blobs/"+d.String(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	what := p.Policy + "@" + d.String()
	if resp.StatusCode != http.StatusOK {
		drain(resp)
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w: %s not found on %s", errBlobUnknown, what, p.Up.cfg.Name)
		}
		return statusError(p.Up, resp, what)
	}
	size := resp.ContentLength
	if size > r.o.MaxBlobSize {
		return fmt.Errorf("%w: %s: %d bytes, limit %d", blobstore.ErrTooLarge, what, size, r.o.MaxBlobSize)
	}
	var w blobstore.Writer
	if size >= 0 {
		ref := blobstore.Ref{Org: f.leader, Kind: blobstore.KindCAS, Digest: blobstore.Digest{Hash: d.Hash, Size: size}}
		if w, err = r.store.NewWriter(ctx, ref, size); err != nil {
			// Past the org's hard quota (or the largest blob): stream
			// without storing.
			r.log.Info("blob streamed without storing", "org", f.leader, "repository", p.Policy, "size", size, "err", err)
			w = nil
		} else {
			defer w.Close()
		}
	}
	f.mu.Lock()
	f.size, f.storing = size, w != nil
	f.mu.Unlock()
	close(f.started)

	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := resp.Body.Read(buf)
		if k > 0 {
			idle.Reset(r.o.UpstreamIdleTimeout)
			if size >= 0 && n+int64(k) > size {
				return fmt.Errorf("%w: %s: more bytes than the %d announced", errUpstream, what, size)
			}
			if n+int64(k) > r.o.MaxBlobSize {
				return fmt.Errorf("%w: %s: over %d bytes", blobstore.ErrTooLarge, what, r.o.MaxBlobSize)
			}
			if _, err := f.file.WriteAt(buf[:k], n); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			h.Write(buf[:k])
			if w != nil {
				if _, err := w.Write(buf[:k]); err != nil {
					r.log.Warn("blob store write failed; streaming without storing", "org", f.leader, "err", err)
					w.Close()
					w = nil
					f.mu.Lock()
					f.storing = false
					f.mu.Unlock()
				}
			}
			n += int64(k)
			r.metrics.upstreamBytes(p.Up.cfg.Name, k)
			f.progress(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if c := context.Cause(ctx); c != nil {
				rerr = c
			}
			return fmt.Errorf("%w: %s: cut after %d bytes: %v", errUpstream, what, n, rerr)
		}
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%w: %s: %d bytes of %d", errUpstream, what, n, size)
	}
	var got blobstore.Hash
	h.Sum(got[:0])
	if got != d.Hash {
		return fmt.Errorf("%w: %s: the upstream sent content that hashes to sha256:%s", errUpstream, what, got)
	}
	f.verify(n)
	idle.Stop()
	if w != nil {
		if err := w.Commit(ctx); err != nil {
			r.log.Info("blob not stored", "org", f.leader, "repository", p.Policy, "err", err)
		}
	}
	// Other orgs that joined (and the leader, when the size was not
	// known in advance) get their copy from the spool.
	first := 1
	if w == nil && size < 0 {
		first = 0
	}
	for i := first; ; i++ {
		fs.mu.Lock()
		f.mu.Lock()
		if i >= len(f.orgs) {
			// Leave the map now, so later requests go to the store.
			if fs.m[f.key] == f {
				delete(fs.m, f.key)
			}
			f.mu.Unlock()
			fs.mu.Unlock()
			break
		}
		org := f.orgs[i]
		f.mu.Unlock()
		fs.mu.Unlock()
		ref := blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: blobstore.Digest{Hash: d.Hash, Size: n}}
		if err := blobstore.Put(ctx, r.store, ref, n, io.NewSectionReader(f.file, 0, n)); err != nil {
			r.log.Info("blob not stored", "org", org, "repository", p.Policy, "err", err)
		}
	}
	return nil
}

// progress records that n bytes are in the spool.
func (f *flight) progress(n int64) {
	f.mu.Lock()
	f.written = n
	f.broadcastLocked()
	f.mu.Unlock()
}

// verify releases the whole blob to readers.
func (f *flight) verify(n int64) {
	f.mu.Lock()
	f.size, f.written, f.verified = n, n, true
	f.broadcastLocked()
	f.mu.Unlock()
}

// finish ends the flight with err (nil after success).
func (f *flight) finish(err error) {
	f.mu.Lock()
	if err != nil && !f.verified {
		f.err = err
	}
	f.done = true
	f.broadcastLocked()
	f.mu.Unlock()
	select {
	case <-f.started:
	default:
		close(f.started)
	}
}

func (f *flight) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// release drops a reference; the last one closes the spool. When only the
// fetch is left and it stores nothing, it has no one to serve: it stops.
func (f *flight) release() {
	f.mu.Lock()
	f.refs--
	refs, storing, done := f.refs, f.storing, f.done
	f.mu.Unlock()
	switch {
	case refs == 0:
		f.file.Close()
	case refs == 1 && !storing && !done:
		f.cancel(errors.New("no client left and nothing to store"))
	}
}

// wait blocks until the flight started (its size is known) or failed.
func (f *flight) wait(ctx context.Context) (int64, error) {
	select {
	case <-f.started:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	return f.size, nil
}

// waitDone blocks until the whole blob is verified (for a blob whose size
// the upstream did not announce).
func (f *flight) waitDone(ctx context.Context) (int64, error) {
	for {
		f.mu.Lock()
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return 0, err
		}
		if f.verified {
			n := f.size
			f.mu.Unlock()
			return n, nil
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// reader reads the blob from off for n bytes, as the spool fills.
func (f *flight) reader(ctx context.Context, off, n int64) io.Reader {
	return &flightReader{f: f, ctx: ctx, off: off, end: off + n}
}

type flightReader struct {
	f        *flight
	ctx      context.Context
	off, end int64
}

func (fr *flightReader) Read(p []byte) (int, error) {
	if fr.off >= fr.end {
		return 0, io.EOF
	}
	f := fr.f
	for {
		f.mu.Lock()
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return 0, err
		}
		avail := f.written
		if !f.verified {
			avail = min(avail, f.size-1) // the last byte waits for the digest
		}
		if fr.off < avail {
			f.mu.Unlock()
			k := min(int64(len(p)), avail-fr.off, fr.end-fr.off)
			got, err := f.file.ReadAt(p[:k], fr.off)
			fr.off += int64(got)
			if err == io.EOF && got > 0 {
				err = nil
			}
			return got, err
		}
		if f.done {
			f.mu.Unlock()
			return 0, fmt.Errorf("%w: fetch ended early", errUpstream)
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-fr.ctx.Done():
			return 0, fr.ctx.Err()
		}
	}
}
