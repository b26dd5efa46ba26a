// Package actionscache serves the GitHub Actions cache protocols that the
// unmodified @actions/cache package speaks: the v1 REST API under
// /actions-cache/_apis/artifactcache/, the v2 Twirp API under
// /twirp/github.actions.results.api.v1.CacheService/, and the signed blob
// URLs of both under /actions-cache/blobs/ (v2 uploads follow the Azure Blob
// protocol: Put Blob, Put Block, Put Block List).
//
// Archives are stored in the org's CAS (deduplicated, under the org's
// quota); entries (org, scope, key, version) are kept in a journal.
// Entries are scoped by ref, as GitHub scopes them: a job credential whose
// Scopes include "cache.ref=<ref>" saves under that ref and restores from
// it first, then from every "cache.readref=<ref>" it holds, in order (a
// pull request's base branch, then the default branch); people's and CI
// systems' tokens use the org-wide scope "". In each scope, in order, the
// key and then each restore key match exactly first, then by prefix,
// newest first.
package actionscache

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Path prefixes of the routes Handler serves.
const (
	Prefix      = "/actions-cache/"
	TwirpPrefix = "/twirp/github.actions.results.api.v1.CacheService/"
	V1Prefix    = Prefix + "_apis/artifactcache/"
	BlobsPrefix = Prefix + "blobs/"
)

// Options tunes a Handler.
type Options struct {
	// URLTTL is how long signed upload and download URLs stay valid.
	// Default 1 hour.
	URLTTL time.Duration
	// SigningKey signs blob URLs; default a random key per process (so
	// URLs do not survive a restart or cross replicas).
	SigningKey []byte
	// MaxArchiveSize bounds one cache archive. Default 10 GiB.
	MaxArchiveSize int64
}

// Handler serves the Actions cache.
type Handler struct {
	store   blobstore.Store
	log     *slog.Logger
	opts    Options
	dir     string
	entries *entries
	sign    signer
	now     func() time.Time

	mu      sync.Mutex
	nextID  int64
	pending map[int64]*pending
}

// pending is a save in progress.
type pending struct {
	id                       int64
	org, scope, key, version string
	owner                    string // the principal that reserved it
	path                     string
	size                     int64 // v1: the size announced at reservation (may be 0)
	blocks                   map[string]string
	busy                     sync.Mutex
	last                     time.Time
}

// New returns a Handler keeping its journal and uploads under dir.
func New(store blobstore.Store, log *slog.Logger, dir string, opts Options) (*Handler, error) {
	if opts.URLTTL == 0 {
		opts.URLTTL = time.Hour
	}
	if opts.MaxArchiveSize == 0 {
		opts.MaxArchiveSize = 10 << 30
	}
	if len(opts.SigningKey) == 0 {
		opts.SigningKey = make([]byte, 32)
		rand.Read(opts.SigningKey)
	}
	up := filepath.Join(dir, "uploads")
	if err := os.RemoveAll(up); err != nil {
		return nil, fmt.Errorf("actions cache: %w", err)
	}
	if err := os.MkdirAll(up, 0o700); err != nil {
		return nil, fmt.Errorf("actions cache: %w", err)
	}
	es, err := openEntries(filepath.Join(dir, "entries.jsonl"))
	if err != nil {
		return nil, err
	}
	return &Handler{
		store: store, log: log.With("component", "cache.actions"), opts: opts, dir: dir,
		entries: es, sign: signer{key: opts.SigningKey}, now: time.Now,
		nextID: time.Now().Unix(), pending: map[int64]*pending{},
	}, nil
}

// Close releases the journal and abandons saves in progress.
func (h *Handler) Close() error {
	h.Sweep(0)
	return h.entries.close()
}

// Sweep abandons saves idle for longer than idle and returns how many.
func (h *Handler) Sweep(idle time.Duration) int {
	cutoff := h.now().Add(-idle)
	h.mu.Lock()
	var stale []*pending
	for id, p := range h.pending {
		if p.last.Before(cutoff) || idle == 0 {
			stale = append(stale, p)
			delete(h.pending, id)
		}
	}
	h.mu.Unlock()
	for _, p := range stale {
		h.discard(p)
	}
	return len(stale)
}

func (h *Handler) discard(p *pending) {
	os.Remove(p.path)
	for _, b := range p.blocks {
		os.Remove(b)
	}
}

// NoRoute answers a path under Prefix that no route serves.
func (h *Handler) NoRoute(w http.ResponseWriter, r *http.Request) error {
	return fmt.Errorf("%w: %s %s", blobstore.ErrNotFound, r.Method, r.URL.Path)
}

// scopes returns the scope the caller saves to and the scopes it restores
// from, in order. A person's or CI system's token uses the org-wide scope
// "". A job's credential names its scopes ("cache.ref=<own>", then
// "cache.readref=<ref>" for each further scope, as internal/cache/jobcred
// mints them); a job credential without a "cache.ref=" has no Actions
// cache (ok false).
func scopes(c access.Caller) (own string, read []string, ok bool) {
	p := c.Principal
	if p.Kind != auth.KindJob {
		return "", []string{""}, true
	}
	for _, s := range p.Scopes {
		if ref, found := strings.CutPrefix(s, "cache.ref="); found {
			own, ok = ref, true
		}
	}
	if !ok {
		return "", nil, false
	}
	read = []string{own}
	for _, s := range p.Scopes {
		if ref, found := strings.CutPrefix(s, "cache.readref="); found && !slices.Contains(read, ref) {
			read = append(read, ref)
		}
	}
	return own, read, true
}

// reserve starts a save; it fails if the entry exists or is being saved.
func (h *Handler) reserve(c access.Caller, key, version string, size int64) (*pending, error) {
	if err := validKey(key, version); err != nil {
		return nil, err
	}
	if size < 0 || size > h.opts.MaxArchiveSize {
		return nil, fmt.Errorf("%w: archive of %d bytes, at most %d", blobstore.ErrTooLarge, size, h.opts.MaxArchiveSize)
	}
	own, _, ok := scopes(c)
	if !ok {
		return nil, fmt.Errorf("%w: this job's credential has no Actions cache scope", auth.ErrForbidden)
	}
	if h.entries.exists(c.Org(), own, key, version) {
		return nil, errExists
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.pending {
		if p.org == c.Org() && p.scope == own && p.key == key && p.version == version {
			return nil, errExists
		}
	}
	h.nextID++
	p := &pending{id: h.nextID, org: c.Org(), owner: owner(c), scope: own, key: key, version: version, size: size, last: h.now(),
		path: filepath.Join(h.dir, "uploads", fmt.Sprint(h.nextID)), blocks: map[string]string{}}
	f, err := os.OpenFile(p.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("reserve cache: %w", err)
	}
	f.Close()
	h.pending[p.id] = p
	return p, nil
}

var errExists = fmt.Errorf("cache entry exists or is being saved")

func validKey(key, version string) error {
	if key == "" || len(key) > 512 || strings.ContainsAny(key, ",\x00") {
		return fmt.Errorf("%w: key must be 1 to 512 characters without commas", blobstore.ErrInvalid)
	}
	if version == "" || len(version) > 512 {
		return fmt.Errorf("%w: version must be 1 to 512 characters", blobstore.ErrInvalid)
	}
	return nil
}

// owner names the principal of c, to whom a save it reserves belongs.
func owner(c access.Caller) string { return string(c.Principal.Kind) + ":" + c.Principal.ID }

// pendingOf returns the pending save id if c reserved it: another
// principal (of the same org, and whatever its scope) can neither upload
// to nor commit it, however it learns the id.
func (h *Handler) pendingOf(c access.Caller, id int64) *pending {
	h.mu.Lock()
	p := h.pending[id]
	h.mu.Unlock()
	if p == nil || p.org != c.Org() || p.owner != owner(c) {
		return nil
	}
	return p
}

// take returns the pending save id of c, locked for the caller.
func (h *Handler) take(c access.Caller, id int64) (*pending, error) {
	p := h.pendingOf(c, id)
	if p == nil {
		return nil, fmt.Errorf("cache upload %d: %w", id, blobstore.ErrNotFound)
	}
	p.busy.Lock()
	p.last = h.now()
	return p, nil
}

// commit hashes the assembled archive, stores it in the org's CAS and
// records the entry.
func (h *Handler) commit(r *http.Request, p *pending, size int64) (*Entry, error) {
	h.mu.Lock()
	if h.pending[p.id] != p {
		h.mu.Unlock()
		return nil, fmt.Errorf("cache upload %d: %w", p.id, blobstore.ErrNotFound)
	}
	delete(h.pending, p.id)
	h.mu.Unlock()
	defer h.discard(p)
	f, err := os.Open(p.path)
	if err != nil {
		return nil, fmt.Errorf("commit cache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("commit cache: %w", err)
	}
	if size >= 0 && fi.Size() != size {
		return nil, fmt.Errorf("%w: uploaded %d bytes, commit says %d", blobstore.ErrInvalid, fi.Size(), size)
	}
	d, err := hashFile(f)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	ref := blobstore.Ref{Org: p.org, Kind: blobstore.KindCAS, Digest: d}
	missing, err := h.store.FindMissing(r.Context(), p.org, blobstore.KindCAS, []blobstore.Digest{d})
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		if err := blobstore.Put(r.Context(), h.store, ref, d.Size, f); err != nil {
			return nil, err
		}
	}
	e := &Entry{Org: p.org, Scope: p.scope, Key: p.key, Version: p.version, Hash: d.Hash.String(), Size: d.Size, Created: h.now()}
	if err := h.entries.add(e); err != nil {
		return nil, err
	}
	return e, nil
}

// lookup returns the first matching entry whose archive still exists.
func (h *Handler) lookup(r *http.Request, c access.Caller, keys []string, version string) (*Entry, error) {
	_, read, _ := scopes(c)
	for _, e := range h.entries.match(c.Org(), read, keys, version) {
		missing, err := h.store.FindMissing(r.Context(), c.Org(), blobstore.KindCAS, []blobstore.Digest{e.digest()})
		if err != nil {
			return nil, err
		}
		if len(missing) == 0 {
			return e, nil
		}
		h.entries.remove(e) // its archive was evicted
	}
	return nil, nil
}

// baseURL is the scheme and host the client reached us at.
// A proxy in front (the agent's forwarder of a sandbox's platform
// address) says which scheme its client used in X-Forwarded-Proto; a
// client setting it itself only changes the URLs it is given back.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

func (h *Handler) downloadURL(r *http.Request, e *Entry) string {
	id := e.Hash + "." + fmt.Sprint(e.Size)
	q := h.sign.query("down", e.Org+"/"+id, h.now(), h.opts.URLTTL)
	return baseURL(r) + BlobsPrefix + "down/" + id + "?org=" + urlEscape(e.Org) + "&" + q
}

func (h *Handler) uploadURL(r *http.Request, p *pending) string {
	id := fmt.Sprint(p.id)
	return baseURL(r) + BlobsPrefix + "up/" + id + "?" + h.sign.query("up", p.org+"/"+id, h.now(), h.opts.URLTTL)
}
