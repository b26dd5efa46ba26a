package registry

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// getBlob serves GET and HEAD of a blob, with Range: from the org's store,
// else (a pulled-through repository) from the upstream through the
// blob's flight, streamed as it arrives.
func (r *Registry) getBlob(w http.ResponseWriter, req *http.Request, c *call) error {
	ctx := req.Context()
	d := c.t.Digest
	ref := d.ref(c.repo.Org)
	rc, size, err := r.store.Get(ctx, ref, 0, 0)
	switch {
	case err == nil:
		r.metrics.cache("blob", cacheHit)
		return r.serveStored(w, req, c, rc, size)
	case !errors.Is(err, blobstore.ErrNotFound):
		return err
	case c.repo.Up == nil:
		return fmt.Errorf("%w: %s@%s", errBlobUnknown, c.t.Name, d)
	}
	r.metrics.cache("blob", cacheMiss)
	cr, err := r.creds.forRequest(ctx, c.repo.Org, c.repo.Up)
	if err != nil {
		return err
	}
	if req.Method == http.MethodHead {
		return r.headUpstreamBlob(w, req, c, cr)
	}
	f, err := r.flights.join(c.repo, cr, d)
	if err != nil {
		return err
	}
	defer f.release()
	if size, err = f.wait(ctx); err != nil {
		return err
	}
	if size < 0 {
		if size, err = f.waitDone(ctx); err != nil {
			return err
		}
	}
	off, n, partial, err := ParseRange(req.Header.Get("Range"), size)
	if err != nil {
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		return err
	}
	if !partial {
		off, n = 0, size
	}
	blobHeaders(w, d, off, n, size, partial, cacheMiss)
	// Copy what arrives; a fetch that fails (a cut, a tampered or stalled
	// upstream) aborts the response, so the client never takes a short or
	// wrong blob for a whole one.
	buf := make([]byte, 256<<10)
	if _, err := io.CopyBuffer(w, f.reader(ctx, off, n), buf); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("aborting a blob response", "org", c.repo.Org, "repository", c.repo.Policy, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// serveStored answers from the store: rc is the whole blob.
func (r *Registry) serveStored(w http.ResponseWriter, req *http.Request, c *call, rc io.ReadCloser, size int64) error {
	off, n, partial, err := ParseRange(req.Header.Get("Range"), size)
	if err != nil {
		rc.Close()
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		return err
	}
	if partial && req.Method != http.MethodHead {
		rc.Close()
		if rc, _, err = r.store.Get(req.Context(), c.t.Digest.ref(c.repo.Org), off, n); err != nil {
			return err
		}
	}
	defer rc.Close()
	if !partial {
		off, n = 0, size
	}
	blobHeaders(w, c.t.Digest, off, n, size, partial, cacheHit)
	if req.Method == http.MethodHead {
		return nil
	}
	// To the connection's own writer (the headers are out), so that the
	// store's file reaches the socket by sendfile, not through a buffer.
	_, err = io.Copy(unwrap(w), rc)
	if err != nil && req.Context().Err() == nil {
		// The headers are out: abort rather than end short.
		r.log.Warn("aborting a blob response", "org", c.repo.Org, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// unwrap returns the innermost ResponseWriter of wrappers (the error
// wrapper's status tracker), which net/http's own writer follows with
// sendfile.
func unwrap(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

func blobHeaders(w http.ResponseWriter, d Digest, off, n, size int64, partial bool, cache string) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Accept-Ranges", "bytes")
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000")
	h.Set("X-Nimbus-Cache", cache)
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
		w.WriteHeader(http.StatusPartialContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// headUpstreamBlob answers a HEAD the store cannot: the upstream's answer
// (its size), without fetching the blob.
func (r *Registry) headUpstreamBlob(w http.ResponseWriter, req *http.Request, c *call, cr creds) error {
	resp, err := c.repo.Up.do(req.Context(), cr, http.MethodHead, c.repo.Remote, "blobs/"+c.t.Digest.String(), nil)
	if err != nil {
		return err
	}
	drain(resp)
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s@%s", errBlobUnknown, c.t.Name, c.t.Digest)
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(c.repo.Up, resp, c.repo.Policy+"@"+c.t.Digest.String())
	}
	if resp.ContentLength < 0 {
		return fmt.Errorf("%w: %s: HEAD without a length", errUpstream, c.repo.Up.cfg.Name)
	}
	blobHeaders(w, c.t.Digest, 0, resp.ContentLength, resp.ContentLength, false, cacheMiss)
	return nil
}
