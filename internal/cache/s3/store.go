package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Options tunes a Store.
type Options struct {
	// Prefix is prepended to every object key.
	Prefix string
	// DefaultQuota and OrgQuotas bound what each org holds in the bucket,
	// as they bound what it holds on disk.
	DefaultQuota blobstore.Quota
	OrgQuotas    map[string]blobstore.Quota
	// MinRetention: nothing used more recently is evicted.
	MinRetention time.Duration
	// PartSize: larger blobs are uploaded in parts of this size (at least
	// 5 MiB, the service's minimum). Default 64 MiB.
	PartSize int64
	// ListInterval is how often the bucket is listed again to pick up what
	// other replicas wrote or removed. Default 10 minutes.
	ListInterval time.Duration
	// Unavailable, when set and returning an error, makes existence
	// answers fail instead of coming from the ledger (the circuit breaker
	// in front of the service is open: a blob said to exist could not be
	// read).
	Unavailable func() error
	// Logger receives the store's logs. Default: discard.
	Logger *slog.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

const minPartSize = 5 << 20

// Store is a blob store in an S3 bucket. Objects are named
// <prefix><org>/<kind>/<sha256 hex>, where <org> is the first 32 hex digits
// of the SHA-256 of the org id, so an org only ever reaches its own
// objects. CAS uploads carry their digest as the payload hash, which the
// service verifies; every upload becomes visible only once all of its
// bytes (and, for the CAS, a matching hash) are in.
type Store struct {
	c      *Client
	opts   Options
	log    *slog.Logger
	ledger *ledger

	stop context.CancelFunc
	wg   sync.WaitGroup
}

var _ blobstore.Store = (*Store)(nil)

// Open returns a store over c and starts listing the bucket in the
// background (until Close); it serves at once.
func Open(c *Client, opts Options) (*Store, error) {
	if opts.PartSize == 0 {
		opts.PartSize = 64 << 20
	}
	if opts.PartSize < minPartSize {
		return nil, fmt.Errorf("s3 store: part size %d below the 5 MiB minimum", opts.PartSize)
	}
	if opts.ListInterval == 0 {
		opts.ListInterval = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Unavailable == nil {
		opts.Unavailable = func() error { return nil }
	}
	quotas := map[string]blobstore.Quota{}
	for org, q := range opts.OrgQuotas {
		quotas[orgDir(org)] = q
	}
	s := &Store{c: c, opts: opts, log: opts.Logger.With("component", "cache.s3")}
	s.ledger = newLedger(int64(opts.MinRetention/time.Second), func(dir string) blobstore.Quota {
		if q, ok := quotas[dir]; ok {
			return q
		}
		return opts.DefaultQuota
	})
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.listLoop(ctx)
	}()
	return s, nil
}

// Close stops the background listing and waits for it.
func (s *Store) Close() error {
	s.stop()
	s.wg.Wait()
	return nil
}

// Ready reports whether the first listing has finished (from then on
// existence answers come from memory).
func (s *Store) Ready() bool { return s.ledger.isComplete() }

// Stats returns the entries and bytes the store knows the bucket holds.
func (s *Store) Stats() (entries int, bytes int64) { return s.ledger.stats() }

func orgDir(org string) string {
	h := sha256.Sum256([]byte(org))
	return hex.EncodeToString(h[:16])
}

func hexSHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func (s *Store) key(dir string, kind blobstore.Kind, h *blobstore.Hash) string {
	return s.opts.Prefix + dir + "/" + kind.String() + "/" + h.String()
}

// parseKey is the inverse of key for listed objects.
func (s *Store) parseKey(k string) (dir string, key itemKey, ok bool) {
	rest, ok := strings.CutPrefix(k, s.opts.Prefix)
	if !ok {
		return "", itemKey{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || len(parts[0]) != 32 || strings.Trim(parts[0], "0123456789abcdef") != "" {
		return "", itemKey{}, false
	}
	var kind blobstore.Kind
	for _, kd := range blobstore.Kinds {
		if kd.String() == parts[1] {
			kind = kd
		}
	}
	h, err := blobstore.ParseHash(parts[2])
	if kind == 0 || err != nil {
		return "", itemKey{}, false
	}
	return parts[0], itemKey{kind: kind, hash: h}, true
}

func (s *Store) now() int64 { return s.opts.Now().Unix() }

// Get implements blobstore.Store.
func (s *Store) Get(ctx context.Context, ref blobstore.Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	if ref.Kind == blobstore.KindCAS && ref.Digest.IsEmpty() {
		if _, err := blobstore.CheckRange(0, offset, limit); err != nil {
			return nil, 0, err
		}
		return io.NopCloser(bytes.NewReader(nil)), 0, nil
	}
	dir := orgDir(ref.Org)
	// A blob the ledger does not know is still asked for (one GET): another
	// replica may have written it since the last listing.
	st, size := s.ledger.lookup(dir, ref.Kind, ref.Digest, s.now())
	switch st {
	case present:
		n, err := blobstore.CheckRange(size, offset, limit)
		if err != nil {
			return nil, 0, err
		}
		if n == 0 {
			return io.NopCloser(bytes.NewReader(nil)), size, nil
		}
		if offset > 0 || limit > 0 {
			limit = n
		}
	}
	key := itemKey{ref.Kind, ref.Digest.Hash}
	r, size, err := s.c.Get(ctx, s.key(dir, ref.Kind, &ref.Digest.Hash), offset, limit)
	if errors.Is(err, blobstore.ErrNotFound) {
		s.ledger.forget(dir, key)
		return nil, 0, fmt.Errorf("%s: %w", ref, blobstore.ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	if ref.Kind == blobstore.KindCAS && ref.Digest.Size >= 0 && size != ref.Digest.Size {
		r.Close()
		return nil, 0, fmt.Errorf("%s: object of %d bytes: %w", ref, size, blobstore.ErrNotFound)
	}
	if st != present {
		s.ledger.add(dir, key, size, s.now())
	}
	return r, size, nil
}

// headParallelism bounds the existence checks sent at once while the
// ledger is incomplete.
const headParallelism = 16

// FindMissing implements blobstore.Store. Once the bucket has been listed
// the answer comes from memory; before, unknown digests are checked with
// HEAD requests (and remembered).
func (s *Store) FindMissing(ctx context.Context, org string, kind blobstore.Kind, ds []blobstore.Digest) ([]blobstore.Digest, error) {
	if err := s.opts.Unavailable(); err != nil {
		return nil, err
	}
	dir := orgDir(org)
	now := s.now()
	states := make([]state, len(ds))
	var unknowns []int
	for i, d := range ds {
		if kind == blobstore.KindCAS && d.IsEmpty() {
			states[i] = present
			continue
		}
		states[i], _ = s.ledger.lookup(dir, kind, d, now)
		if states[i] == unknown {
			unknowns = append(unknowns, i)
		}
	}
	if len(unknowns) > 0 {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(headParallelism)
		for _, i := range unknowns {
			g.Go(func() error {
				d := ds[i]
				size, err := s.c.Head(gctx, s.key(dir, kind, &d.Hash))
				switch {
				case errors.Is(err, blobstore.ErrNotFound):
					states[i] = absent
				case err != nil:
					return err
				case kind == blobstore.KindCAS && d.Size >= 0 && size != d.Size:
					states[i] = absent
				default:
					states[i] = present
					s.ledger.add(dir, itemKey{kind, d.Hash}, size, now)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
	}
	var missing []blobstore.Digest
	for i, d := range ds {
		if states[i] != present {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// NewWriter implements blobstore.Store. It reserves room under the org's
// quota (evicting its least recently used objects) before any byte is sent.
// The ref, the size and the content are checked by blobstore.Verifying in
// front of the store.
func (s *Store) NewWriter(ctx context.Context, ref blobstore.Ref, size int64) (blobstore.Writer, error) {
	dir := orgDir(ref.Org)
	key := itemKey{ref.Kind, ref.Digest.Hash}
	victims, err := s.ledger.reserve(dir, key, size, s.now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	s.evict(ctx, victims)
	return s.newWriter(ctx, ref, dir, size), nil
}

// evict deletes objects the ledger dropped. A failed delete leaves an
// object the next listing counts again.
func (s *Store) evict(ctx context.Context, vs []victim) {
	ctx = context.WithoutCancel(ctx)
	for _, v := range vs {
		if err := s.c.Delete(ctx, s.key(v.dir, v.key.kind, &v.key.hash)); err != nil {
			s.log.Warn("evict object", "kind", v.key.kind.String(), "err", err)
		}
	}
}

// listLoop lists the bucket now and every ListInterval, backing off with
// jitter after failures.
func (s *Store) listLoop(ctx context.Context) {
	backoff := time.Second
	for {
		wait := s.opts.ListInterval
		if err := s.listOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("list bucket", "err", err, "retry_in", backoff)
			wait = backoff
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
		wait = wait/2 + rand.N(wait/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// listOnce reconciles the ledger with a full listing of the prefix.
func (s *Store) listOnce(ctx context.Context) error {
	start := time.Now()
	s.ledger.beginListing()
	token := ""
	n := 0
	for {
		objs, next, err := s.c.List(ctx, s.opts.Prefix, token)
		if err != nil {
			return err
		}
		for _, o := range objs {
			dir, key, ok := s.parseKey(o.Key)
			if !ok {
				continue
			}
			s.ledger.seen(dir, key, o.Size, o.LastModified.Unix())
			n++
		}
		if next == "" {
			break
		}
		token = next
	}
	s.evict(ctx, s.ledger.endListing(s.now()))
	s.ledger.markComplete()
	s.log.Debug("bucket listed", "objects", n, "duration", time.Since(start))
	return nil
}
