// Package httpcache serves Bazel's HTTP remote cache protocol:
// GET, HEAD and PUT of <prefix>/ac/<sha256> and <prefix>/cas/<sha256>.
// The cache's route table (internal/cache) mounts its handlers behind the
// edge, which authenticates the bearer token (or basic auth with the token
// as the password) and authorizes each route's action.
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
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// Handler serves the HTTP cache.
type Handler struct {
	store blobstore.Store
	log   *slog.Logger
}

// New returns a Handler over store.
func New(store blobstore.Store, log *slog.Logger) *Handler {
	return &Handler{store: store, log: log.With("component", "cache.http")}
}

// ParsePath parses "<kind>/<hash>" (the path after the prefix).
func ParsePath(p string) (blobstore.Kind, blobstore.Hash, error) {
	kind, hash, ok := strings.Cut(p, "/")
	if !ok {
		return 0, blobstore.Hash{}, fmt.Errorf("%w: path %q: want ac/<sha256> or cas/<sha256>", blobstore.ErrNotFound, p)
	}
	return parse(kind, hash)
}

func parse(kind, hash string) (blobstore.Kind, blobstore.Hash, error) {
	var k blobstore.Kind
	switch kind {
	case "ac":
		k = blobstore.KindAC
	case "cas":
		k = blobstore.KindCAS
	default:
		return 0, blobstore.Hash{}, fmt.Errorf("%w: %s/%s: want ac/<sha256> or cas/<sha256>", blobstore.ErrNotFound, kind, hash)
	}
	h, err := blobstore.ParseHash(hash)
	if err != nil {
		return 0, blobstore.Hash{}, err
	}
	return k, h, nil
}

// ref is the blob a request names by the {kind} and {hash} of its route
// (kind, when the route fixes it), in the caller's org.
func ref(r *http.Request, kind string) (blobstore.Ref, error) {
	c, err := access.CallerFrom(r.Context())
	if err != nil {
		return blobstore.Ref{}, err
	}
	if kind == "" {
		kind = r.PathValue("kind")
	}
	k, h, err := parse(kind, r.PathValue("hash"))
	if err != nil {
		return blobstore.Ref{}, err
	}
	return blobstore.Ref{Org: c.Org(), Kind: k, Digest: blobstore.Digest{Hash: h, Size: -1}}, nil
}

// Get serves GET and HEAD of {kind}/{hash}. The store in front of every
// protocol (actionresult.Checking) serves an action cache entry only when
// every blob it references exists.
func (h *Handler) Get(w http.ResponseWriter, r *http.Request) error {
	ref, err := ref(r, "")
	if err != nil {
		return err
	}
	ctx := r.Context()
	if ref.Kind == blobstore.KindAC {
		b, err := blobstore.GetBytes(ctx, h.store, ref, actionresult.MaxSize)
		if err != nil {
			return err
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

// PutAC stores the action result of ac/{hash} (the store checks that it
// parses).
func (h *Handler) PutAC(w http.ResponseWriter, r *http.Request) error {
	ref, err := ref(r, "ac")
	if err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, actionresult.MaxSize+1))
	if err != nil {
		return fmt.Errorf("%w: read body: %v", blobstore.ErrInvalid, err)
	}
	if len(b) > actionresult.MaxSize {
		return fmt.Errorf("%w: action result over %d bytes", blobstore.ErrTooLarge, actionresult.MaxSize)
	}
	if err := blobstore.PutBytes(r.Context(), h.store, ref, b); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// PutCAS stores the blob cas/{hash}; its content must hash to it.
func (h *Handler) PutCAS(w http.ResponseWriter, r *http.Request) error {
	ref, err := ref(r, "cas")
	if err != nil {
		return err
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
	if err := blobstore.Put(r.Context(), h.store, ref, size, body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// NoMethod answers a method the protocol does not have on a blob path
// (or 404 for a path that names no blob).
func (h *Handler) NoMethod(w http.ResponseWriter, r *http.Request) error {
	if _, _, err := parse(r.PathValue("kind"), r.PathValue("hash")); err != nil {
		return err
	}
	w.Header().Set("Allow", "GET, HEAD, PUT")
	return httperror.New(http.StatusMethodNotAllowed, "method_not_allowed", "method %s not allowed", r.Method)
}

// NoRoute answers a path that names no blob.
func (h *Handler) NoRoute(w http.ResponseWriter, r *http.Request) error {
	return fmt.Errorf("%w: %s: want ac/<sha256> or cas/<sha256>", blobstore.ErrNotFound, r.URL.Path)
}
