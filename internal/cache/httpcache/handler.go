// Package httpcache serves Bazel's HTTP remote cache protocol:
// GET, HEAD and PUT of <prefix>/ac/<sha256> and <prefix>/cas/<sha256>,
// authenticated by a bearer token or by basic auth with the token as the
// password.
package httpcache

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/actionresult"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/httperr"
)

// maxACSize bounds an action cache entry.
const maxACSize = 16 << 20

// Handler serves the HTTP cache under a path prefix.
type Handler struct {
	store  blobstore.Store
	gate   *access.Gate
	log    *slog.Logger
	prefix string
}

// New returns a Handler for requests under prefix (for example "/cache").
func New(store blobstore.Store, gate *access.Gate, log *slog.Logger, prefix string) *Handler {
	return &Handler{store: store, gate: gate, log: log.With("component", "cache.http"), prefix: strings.TrimSuffix(prefix, "/")}
}

// ParsePath parses "<kind>/<hash>" (the path after the prefix).
func ParsePath(p string) (blobstore.Kind, blobstore.Hash, error) {
	kind, hash, ok := strings.Cut(p, "/")
	if !ok {
		return 0, blobstore.Hash{}, fmt.Errorf("%w: path %q: want ac/<sha256> or cas/<sha256>", blobstore.ErrNotFound, p)
	}
	var k blobstore.Kind
	switch kind {
	case "ac":
		k = blobstore.KindAC
	case "cas":
		k = blobstore.KindCAS
	default:
		return 0, blobstore.Hash{}, fmt.Errorf("%w: path %q: want ac/<sha256> or cas/<sha256>", blobstore.ErrNotFound, p)
	}
	h, err := blobstore.ParseHash(hash)
	if err != nil {
		return 0, blobstore.Hash{}, err
	}
	return k, h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		httperr.Write(w, r, h.log, err)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, h.prefix+"/")
	if !ok {
		return fmt.Errorf("%w: %s", blobstore.ErrNotFound, r.URL.Path)
	}
	c, err := h.gate.Check(r.Context(), access.RequestToken(r))
	if err != nil {
		return err
	}
	kind, hash, err := ParsePath(rest)
	if err != nil {
		return err
	}
	ref := blobstore.Ref{Org: c.Org(), Kind: kind, Digest: blobstore.Digest{Hash: hash, Size: -1}}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return h.get(w, r, ref)
	case http.MethodPut:
		if err := c.RequireWrite(); err != nil {
			return err
		}
		return h.put(w, r, ref)
	}
	w.Header().Set("Allow", "GET, HEAD, PUT")
	httperr.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, ref blobstore.Ref) error {
	ctx := r.Context()
	if ref.Kind == blobstore.KindAC {
		b, err := blobstore.GetBytes(ctx, h.store, ref, maxACSize)
		if err != nil {
			return err
		}
		ar, err := actionresult.Parse(b)
		if err != nil {
			return fmt.Errorf("stored action result: %w", blobstore.ErrNotFound)
		}
		complete, err := actionresult.Complete(ctx, h.store, ref.Org, ar)
		if err != nil {
			return err
		}
		if !complete {
			return fmt.Errorf("action result with missing outputs: %w", blobstore.ErrNotFound)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		if r.Method == http.MethodGet {
			w.Write(b)
		}
		return nil
	}
	if r.Method == http.MethodHead {
		missing, err := h.store.FindMissing(ctx, ref.Org, ref.Kind, []blobstore.Digest{ref.Digest})
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s: %w", ref, blobstore.ErrNotFound)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		return nil
	}
	rc, size, err := h.store.Get(ctx, ref, 0, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	if size <= smallBlob {
		// One read and one write (headers and body together) rather than
		// net/http's sniff-then-sendfile, which costs small blobs more
		// system calls than bytes.
		bp := smallBufs.Get().(*[]byte)
		defer smallBufs.Put(bp)
		b := (*bp)[:size]
		if _, err := io.ReadFull(rc, b); err != nil {
			return fmt.Errorf("read %s: %w", ref, err)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Write(b) // errors here are the client's going away
		return nil
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	io.Copy(w, rc) // sendfile from the disk; errors are the client's going away
	return nil
}

// smallBlob is the largest blob served from a buffer rather than by
// sendfile.
const smallBlob = 64 << 10

var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBlob); return &b }}

func (h *Handler) put(w http.ResponseWriter, r *http.Request, ref blobstore.Ref) error {
	ctx := r.Context()
	if ref.Kind == blobstore.KindAC {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxACSize+1))
		if err != nil {
			return fmt.Errorf("%w: read body: %v", blobstore.ErrInvalid, err)
		}
		if len(b) > maxACSize {
			return fmt.Errorf("%w: action result over %d bytes", blobstore.ErrTooLarge, maxACSize)
		}
		if _, err := actionresult.Parse(b); err != nil {
			return err
		}
		if err := blobstore.PutBytes(ctx, h.store, ref, b); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	size := r.ContentLength
	var body io.Reader = r.Body
	if size < 0 {
		// Chunked: buffer it (bounded) to learn the size.
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<20+1))
		if err != nil {
			return fmt.Errorf("%w: read body: %v", blobstore.ErrInvalid, err)
		}
		if len(b) > 64<<20 {
			return fmt.Errorf("%w: send Content-Length with bodies over 64 MiB", blobstore.ErrInvalid)
		}
		size, body = int64(len(b)), bytes.NewReader(b)
	}
	ref.Digest.Size = size
	if err := blobstore.Put(ctx, h.store, ref, size, body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
