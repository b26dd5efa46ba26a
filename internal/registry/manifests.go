package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/httperror"
	"github.com/nimbus-build/nimbus/internal/store"
)

// How a manifest answer was served (X-Nimbus-Cache).
const (
	cacheHit         = "hit"         // from the store, fresh
	cacheMiss        = "miss"        // fetched from the upstream now
	cacheRevalidated = "revalidated" // the upstream confirmed the cached digest
	cacheStale       = "stale"       // the upstream failed; the cached one served
	cacheLocal       = "local"       // an own repository
)

// manifestBody is a manifest ready to serve.
type manifestBody struct {
	b      []byte
	m      Manifest
	digest Digest
	cache  string
	// staleReason says why a stale answer was served.
	staleReason string
}

// getManifest serves GET and HEAD of a manifest by tag or digest.
func (r *Registry) getManifest(w http.ResponseWriter, req *http.Request, c *call) error {
	ctx := req.Context()
	mb, err := r.manifest(ctx, c.repo, c.t.Ref)
	if err != nil {
		return err
	}
	if err := r.checkSignature(ctx, c.repo, mb); err != nil {
		return err
	}
	if !accepts(req.Header.Values("Accept"), mb.m.MediaType) {
		return ociError(http.StatusNotFound, codeManifestUnknown, "%s:%s is a %s, which the request's Accept header does not admit (the registry never converts manifests)",
			c.t.Name, c.t.Ref, mb.m.MediaType)
	}
	r.metrics.cache("manifest", mb.cache)
	h := w.Header()
	h.Set("Content-Type", mb.m.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(mb.b)))
	h.Set("Docker-Content-Digest", mb.digest.String())
	h.Set("Etag", `"`+mb.digest.String()+`"`)
	h.Set("X-Nimbus-Cache", mb.cache)
	if mb.cache == cacheStale {
		h.Set("Warning", `110 nimbus "Response is Stale: `+strings.ReplaceAll(mb.staleReason, `"`, "'")+`"`)
	}
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodHead {
		return nil
	}
	_, err = w.Write(mb.b)
	return err
}

// manifest finds a manifest for p: an own repository's from the store,
// a pulled-through one from the store while its tag is fresh, else from
// the upstream (revalidating a cached tag with a HEAD first, serving the
// cached one if the upstream fails).
func (r *Registry) manifest(ctx context.Context, p repo, ref Reference) (manifestBody, error) {
	if p.Up == nil {
		return r.ownManifest(ctx, p, ref)
	}
	if ref.IsDigest() {
		if mb, err := r.storedManifest(ctx, p, ref.Digest); err == nil {
			mb.cache = cacheHit
			return mb, nil
		} else if !errors.Is(err, errManifestUnknown) {
			return manifestBody{}, err
		}
		return r.fetchManifest(ctx, p, ref)
	}
	rec, ok, err := r.tags.get(ctx, p, ref.Tag)
	if err != nil {
		return manifestBody{}, err
	}
	var cached manifestBody
	if ok {
		d, err := ParseDigest(rec.Digest)
		if err == nil {
			cached, err = r.storedManifest(ctx, p, d)
		}
		ok = err == nil
		if ok && r.o.Now().Sub(rec.Checked) < r.cfg.TagTTL {
			cached.cache = cacheHit
			return cached, nil
		}
	}
	if ok {
		same, err := r.headManifest(ctx, p, ref.Tag, cached.digest)
		switch {
		case err == nil && same:
			r.tags.touch(ctx, p, ref.Tag, rec)
			cached.cache = cacheRevalidated
			return cached, nil
		case staleOK(err):
			cached.cache, cached.staleReason = cacheStale, err.Error()
			r.log.Warn("serving a stale tag", "org", p.Org, "repository", p.Policy, "tag", ref.Tag, "err", err)
			return cached, nil
		case err != nil:
			return manifestBody{}, err
		}
	}
	mb, err := r.fetchManifest(ctx, p, ref)
	if err != nil && ok && staleOK(err) {
		cached.cache, cached.staleReason = cacheStale, err.Error()
		r.log.Warn("serving a stale tag", "org", p.Org, "repository", p.Policy, "tag", ref.Tag, "err", err)
		return cached, nil
	}
	return mb, err
}

// staleOK: the upstream failed in a way that a cached answer may cover
// (it is down, broken or throttling), not one that says the tag is gone
// or that our credentials no longer work.
func staleOK(err error) bool {
	return errors.Is(err, errUpstream) || errors.Is(err, errUpstreamThrottled) || errors.Is(err, context.DeadlineExceeded)
}

// ownManifest reads an own repository's manifest.
func (r *Registry) ownManifest(ctx context.Context, p repo, ref Reference) (manifestBody, error) {
	d := ref.Digest
	if !ref.IsDigest() {
		rec, ok, err := r.tags.get(ctx, p, ref.Tag)
		if err != nil {
			return manifestBody{}, err
		}
		if !ok {
			return manifestBody{}, fmt.Errorf("%w: %s:%s", errManifestUnknown, p.Name, ref.Tag)
		}
		if d, err = ParseDigest(rec.Digest); err != nil {
			return manifestBody{}, fmt.Errorf("tag record of %s:%s: %w", p.Name, ref.Tag, err)
		}
	}
	mb, err := r.storedManifest(ctx, p, d)
	mb.cache = cacheLocal
	return mb, err
}

// storedManifest reads a manifest from the org's store, checks it still
// hashes to its digest and parses it.
func (r *Registry) storedManifest(ctx context.Context, p repo, d Digest) (manifestBody, error) {
	b, err := blobstore.GetBytes(ctx, r.store, d.ref(p.Org), maxManifestSize)
	if errors.Is(err, blobstore.ErrNotFound) {
		return manifestBody{}, fmt.Errorf("%w: %s@%s", errManifestUnknown, p.Name, d)
	}
	if err != nil {
		return manifestBody{}, err
	}
	if digestOf(b) != d {
		return manifestBody{}, fmt.Errorf("stored manifest %s of %s does not hash to its digest", d, p.Org)
	}
	m, err := ParseManifest(b, "")
	if err != nil {
		// A blob under that digest that is not a manifest (pushed as a
		// blob): not a manifest of this repository.
		return manifestBody{}, fmt.Errorf("%w: %s@%s", errManifestUnknown, p.Name, d)
	}
	return manifestBody{b: b, m: m, digest: d}, nil
}

// headManifest asks the upstream whether tag still points at d.
func (r *Registry) headManifest(ctx context.Context, p repo, tag string, d Digest) (bool, error) {
	cr, err := r.creds.forRequest(ctx, p.Org, p.Up)
	if err != nil {
		return false, err
	}
	resp, err := p.Up.do(ctx, cr, http.MethodHead, p.Remote, "manifests/"+tag, acceptHeader())
	if err != nil {
		return false, err
	}
	drain(resp)
	if resp.StatusCode != http.StatusOK {
		return false, statusError(p.Up, resp, p.Policy+":"+tag)
	}
	got := resp.Header.Get("Docker-Content-Digest")
	return got == d.String(), nil
}

func acceptHeader() http.Header {
	return http.Header{"Accept": {strings.Join(manifestAccept, ", ")}}
}

// fetchManifest gets a manifest from the upstream, verifies it (by digest:
// it must hash to the digest; by tag: to the digest the upstream
// declares, if any) and parses it, then stores it and the tag under the
// org. Concurrent fetches of one manifest with the same credentials make
// one request. A manifest that fails verification is never stored or
// served.
func (r *Registry) fetchManifest(ctx context.Context, p repo, ref Reference) (manifestBody, error) {
	cr, err := r.creds.forRequest(ctx, p.Org, p.Up)
	if err != nil {
		return manifestBody{}, err
	}
	key := p.Up.cfg.Name + "\x00" + cr.id + "\x00" + p.Remote + "\x00" + ref.String()
	v, err, _ := r.manifestFetches.Do(key, func() (any, error) {
		// Detached from the first caller: the others wait for it too.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*r.o.UpstreamIdleTimeout)
		defer cancel()
		return r.downloadManifest(fctx, p, cr, ref)
	})
	if err != nil {
		return manifestBody{}, err
	}
	mb := v.(manifestBody)
	mb.cache = cacheMiss
	r.keepManifest(ctx, p, ref, mb)
	return mb, nil
}

func (r *Registry) downloadManifest(ctx context.Context, p repo, cr creds, ref Reference) (manifestBody, error) {
	resp, err := p.Up.do(ctx, cr, http.MethodGet, p.Remote, "manifests/"+ref.String(), acceptHeader())
	if err != nil {
		return manifestBody{}, err
	}
	defer drain(resp)
	what := p.Policy + ":" + ref.String()
	if resp.StatusCode != http.StatusOK {
		return manifestBody{}, statusError(p.Up, resp, what)
	}
	if resp.ContentLength > maxManifestSize {
		return manifestBody{}, fmt.Errorf("%w: %s: manifest of %d bytes", errUpstream, what, resp.ContentLength)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return manifestBody{}, fmt.Errorf("%w: %s: %v", errUpstream, what, err)
	}
	if len(b) > maxManifestSize || (resp.ContentLength >= 0 && int64(len(b)) != resp.ContentLength) {
		return manifestBody{}, fmt.Errorf("%w: %s: manifest length does not match", errUpstream, what)
	}
	d := digestOf(b)
	if ref.IsDigest() && d != ref.Digest {
		return manifestBody{}, fmt.Errorf("%w: %s: the upstream sent a manifest that hashes to %s", errUpstream, what, d)
	}
	if h := resp.Header.Get("Docker-Content-Digest"); h != "" && h != d.String() {
		return manifestBody{}, fmt.Errorf("%w: %s: the upstream declared %s but sent a manifest that hashes to %s", errUpstream, what, clip(h), d)
	}
	m, err := ParseManifest(b, resp.Header.Get("Content-Type"))
	if err != nil {
		return manifestBody{}, fmt.Errorf("%w: %s: %v", errUpstream, what, err)
	}
	return manifestBody{b: bytes.Clone(b), m: m, digest: d}, nil
}

// keepManifest stores a fetched manifest and its tag under the org. A
// store that refuses (the org's hard quota) costs the next pull another
// fetch, not this one its answer.
func (r *Registry) keepManifest(ctx context.Context, p repo, ref Reference, mb manifestBody) {
	ref2 := blobstore.Ref{Org: p.Org, Kind: blobstore.KindCAS, Digest: blobstore.Digest{Hash: mb.digest.Hash, Size: int64(len(mb.b))}}
	if err := blobstore.PutBytes(ctx, r.store, ref2, mb.b); err != nil {
		r.log.Info("manifest not stored", "org", p.Org, "repository", p.Policy, "err", err)
		return
	}
	if ref.IsDigest() {
		return
	}
	rec := tagRecord{Digest: mb.digest.String(), MediaType: mb.m.MediaType, Size: int64(len(mb.b)), Checked: r.o.Now()}
	if err := r.tags.put(ctx, p, ref.Tag, rec); err != nil {
		r.log.Info("tag not stored", "org", p.Org, "repository", p.Policy, "err", err)
	}
}

// putManifest stores a manifest pushed to an own repository: it must
// parse, match the digest it is pushed under, and reference only blobs
// (and, for an index, manifests) the org holds.
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, c *call) error {
	ctx := req.Context()
	if req.ContentLength > maxManifestSize {
		return ociError(http.StatusRequestEntityTooLarge, codeSizeInvalid, "manifest of %d bytes: at most %d", req.ContentLength, maxManifestSize)
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxManifestSize+1))
	if err != nil {
		return err
	}
	if len(b) > maxManifestSize {
		return ociError(http.StatusRequestEntityTooLarge, codeSizeInvalid, "manifest over %d bytes", maxManifestSize)
	}
	m, err := ParseManifest(b, req.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	d := digestOf(b)
	if c.t.Ref.IsDigest() && c.t.Ref.Digest != d {
		return ociError(http.StatusBadRequest, codeDigestInvalid, "manifest hashes to %s, pushed as %s", d, c.t.Ref.Digest)
	}
	var want []blobstore.Digest
	for _, bd := range m.Blobs {
		want = append(want, blobstore.Digest{Hash: bd.Digest.Hash, Size: bd.Size})
	}
	for _, md := range m.Manifests {
		want = append(want, blobstore.Digest{Hash: md.Digest.Hash, Size: md.Size})
	}
	missing, err := r.store.FindMissing(ctx, c.repo.Org, blobstore.KindCAS, want)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &httperror.Error{Status: http.StatusBadRequest, Code: codeManifestBlobUnknown,
			Message: fmt.Sprintf("manifest references %d blob(s) not pushed to this org, e.g. sha256:%s", len(missing), missing[0].Hash),
			Detail:  map[string]string{"digest": "sha256:" + missing[0].Hash.String()}}
	}
	ref := blobstore.Ref{Org: c.repo.Org, Kind: blobstore.KindCAS, Digest: blobstore.Digest{Hash: d.Hash, Size: int64(len(b))}}
	if err := blobstore.PutBytes(ctx, r.store, ref, b); err != nil {
		return err
	}
	if !c.t.Ref.IsDigest() {
		rec := tagRecord{Digest: d.String(), MediaType: m.MediaType, Size: int64(len(b)), Checked: r.o.Now()}
		if err := r.tags.put(ctx, c.repo, c.t.Ref.Tag, rec); err != nil {
			return err
		}
	}
	if r.o.Audit != nil {
		r.o.Audit.Record(ctx, store.AuditEntry{OrgID: c.repo.Org, Actor: audit.Actor(c.caller.principal), Action: "registry.pushed",
			Target: c.t.Name + ":" + c.t.Ref.String(), Detail: map[string]string{"digest": d.String(), "media_type": m.MediaType}})
	}
	h := w.Header()
	h.Set("Location", PathPrefix+c.t.Name+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	if m.Subject != nil {
		h.Set("OCI-Subject", m.Subject.Digest.String())
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}
