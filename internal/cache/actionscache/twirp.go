package actionscache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/httperr"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// Twirp request bodies (proto field names, as @actions/cache sends them).
type createReq struct {
	Key     string `json:"key"`
	Version string `json:"version"`
}

type finalizeReq struct {
	Key       string `json:"key"`
	Version   string `json:"version"`
	SizeBytes string `json:"size_bytes"`
}

type downloadReq struct {
	Key         string   `json:"key"`
	RestoreKeys []string `json:"restore_keys"`
	Version     string   `json:"version"`
}

// decodeTwirp parses a JSON Twirp request strictly.
func decodeTwirp(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type %q: only JSON is served", blobstore.ErrInvalid, ct)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: JSON body: %v", blobstore.ErrInvalid, err)
	}
	return nil
}

// TwirpNoRoute answers a Twirp path or method that no route serves
// (Twirp's bad_route).
func (h *Handler) TwirpNoRoute(w http.ResponseWriter, r *http.Request) error {
	return httperror.New(http.StatusNotFound, "bad_route", "no handler for %s %s", r.Method, r.URL.Path)
}

// CreateCacheEntry starts a save and returns its signed upload URL; ok
// false when the entry exists or is being saved.
func (h *Handler) CreateCacheEntry(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	var req createReq
	if err := decodeTwirp(r, &req); err != nil {
		return err
	}
	p, err := h.reserve(c, req.Key, req.Version, 0)
	if errors.Is(err, errExists) {
		httperr.WriteJSON(w, http.StatusOK, map[string]any{"ok": false})
		return nil
	}
	if err != nil {
		return err
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "signed_upload_url": h.uploadURL(r, p)})
	return nil
}

// FinalizeCacheEntryUpload commits an uploaded save.
func (h *Handler) FinalizeCacheEntryUpload(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	var req finalizeReq
	if err := decodeTwirp(r, &req); err != nil {
		return err
	}
	size, err := strconv.ParseInt(req.SizeBytes, 10, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("%w: size_bytes %q", blobstore.ErrInvalid, req.SizeBytes)
	}
	p := h.findPending(c, req.Key, req.Version)
	if p == nil {
		httperr.WriteJSON(w, http.StatusOK, map[string]any{"ok": false})
		return nil
	}
	p.busy.Lock()
	e, err := h.commit(r, p, size)
	p.busy.Unlock()
	if err != nil {
		return err
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "entry_id": strconv.FormatInt(e.Created.UnixNano(), 10)})
	return nil
}

// GetCacheEntryDownloadURL looks a key (then the restore keys) up and
// returns a signed download URL of the entry found.
func (h *Handler) GetCacheEntryDownloadURL(w http.ResponseWriter, r *http.Request) error {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return err
	}
	var req downloadReq
	if err := decodeTwirp(r, &req); err != nil {
		return err
	}
	keys := append([]string{req.Key}, req.RestoreKeys...)
	if req.Key == "" || len(keys) > 10 || req.Version == "" {
		return fmt.Errorf("%w: want key, at most 9 restore keys, and version", blobstore.ErrInvalid)
	}
	e, err := h.lookup(r, c, keys, req.Version)
	if err != nil {
		return err
	}
	if e == nil {
		httperr.WriteJSON(w, http.StatusOK, map[string]any{"ok": false, "signed_download_url": "", "matched_key": ""})
		return nil
	}
	httperr.WriteJSON(w, http.StatusOK, map[string]any{"ok": true, "signed_download_url": h.downloadURL(r, e), "matched_key": e.Key})
	return nil
}

func (h *Handler) findPending(c access.Caller, key, version string) *pending {
	own, _, ok := scopes(c)
	if !ok {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.pending {
		if p.org == c.Org() && p.owner == owner(c) && p.scope == own && p.key == key && p.version == version {
			return p
		}
	}
	return nil
}
