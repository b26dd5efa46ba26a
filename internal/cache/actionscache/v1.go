package actionscache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/httperr"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

func urlEscape(s string) string { return url.QueryEscape(s) }

// V1GetCache serves GET cache?keys=k1,k2&version=v: the first matching
// entry (200), or 204 on a miss.
func (h *Handler) V1GetCache(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	keys := strings.Split(r.URL.Query().Get("keys"), ",")
	version := r.URL.Query().Get("version")
	if len(keys) == 0 || keys[0] == "" || len(keys) > 10 || version == "" {
		return fmt.Errorf("%w: want keys (1 to 10) and version", blobstore.ErrInvalid)
	}
	e, err := h.lookup(r, c, keys, version)
	if err != nil {
		return err
	}
	if e == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{
		"cacheKey": e.Key, "scope": e.Scope, "cacheVersion": e.Version,
		"creationTime": e.Created.Format(time.RFC3339), "archiveLocation": h.downloadURL(r, e),
	})
	return nil
}

// V1ListCaches serves GET caches?key=k: the org's entries with that key.
func (h *Handler) V1ListCaches(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	var list []map[string]any
	for _, e := range h.entries.list(c.Org(), r.URL.Query().Get("key")) {
		list = append(list, map[string]any{"cacheKey": e.Key, "scope": e.Scope, "cacheVersion": e.Version, "creationTime": e.Created.Format(time.RFC3339)})
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"totalCount": len(list), "artifactCaches": list})
	return nil
}

// V1Reserve serves POST caches {key, version, cacheSize}: a cache id to
// upload to, or 409 when the entry exists or is being saved.
func (h *Handler) V1Reserve(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	var req struct {
		Key       string `json:"key"`
		Version   string `json:"version"`
		CacheSize int64  `json:"cacheSize"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	p, err := h.reserve(c, req.Key, req.Version, req.CacheSize)
	if errors.Is(err, errExists) {
		return httperror.New(http.StatusConflict, "already_exists", "%v", err)
	}
	if err != nil {
		return err
	}
	httperr.WriteJSON(w, http.StatusCreated, map[string]int64{"cacheId": p.id})
	return nil
}

func cacheID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: cache id %q", blobstore.ErrInvalid, r.PathValue("id"))
	}
	return id, nil
}

// V1Upload serves PATCH caches/{id}: one Content-Range chunk.
func (h *Handler) V1Upload(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	id, err := cacheID(r)
	if err != nil {
		return err
	}
	return h.v1Chunk(w, r, c, id)
}

// V1Commit serves POST caches/{id} {size}: the upload is complete.
func (h *Handler) V1Commit(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	id, err := cacheID(r)
	if err != nil {
		return err
	}
	var req struct {
		Size int64 `json:"size"`
	}
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	p, err := h.take(c, id)
	if err != nil {
		return err
	}
	_, err = h.commit(r, p, req.Size)
	p.busy.Unlock()
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// v1Chunk writes one Content-Range chunk at its offset.
func (h *Handler) v1Chunk(w http.ResponseWriter, r *http.Request, c access.Caller, id int64) error {
	start, end, err := parseContentRange(r.Header.Get("Content-Range"))
	if err != nil {
		return err
	}
	if end >= h.opts.MaxArchiveSize {
		return fmt.Errorf("%w: chunk past %d bytes", blobstore.ErrTooLarge, h.opts.MaxArchiveSize)
	}
	p := h.pendingOf(c, id)
	if p == nil {
		return fmt.Errorf("cache upload %d: %w", id, blobstore.ErrNotFound)
	}
	// Chunks of one upload arrive in parallel: each writes its own range.
	f, err := os.OpenFile(p.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cache upload %d: %w", id, blobstore.ErrNotFound)
	}
	defer f.Close()
	n, err := io.Copy(io.NewOffsetWriter(f, start), io.LimitReader(r.Body, end-start+2))
	if err != nil {
		return fmt.Errorf("%w: read chunk: %v", blobstore.ErrInvalid, err)
	}
	if n != end-start+1 {
		return fmt.Errorf("%w: chunk of %d bytes for range %d-%d", blobstore.ErrInvalid, n, start, end)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: JSON body: %v", blobstore.ErrInvalid, err)
	}
	return nil
}
