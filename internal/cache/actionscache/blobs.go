package actionscache

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

func hashFile(f *os.File) (blobstore.Digest, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return blobstore.Digest{}, fmt.Errorf("hash archive: %w", err)
	}
	var d blobstore.Digest
	h.Sum(d.Hash[:0])
	d.Size = n
	return d, nil
}

// BlobUpload serves PUT of a signed upload URL, up/{id} (Azure Blob
// uploads). The URL's signature is its authorization.
func (h *Handler) BlobUpload(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	pid, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: upload id", blobstore.ErrNotFound)
	}
	q := r.URL.Query()
	h.mu.Lock()
	p := h.pending[pid]
	h.mu.Unlock()
	if p == nil || !h.sign.check("up", p.org+"/"+id, q.Get("exp"), q.Get("sig"), h.now()) {
		return fmt.Errorf("%w: unknown or expired upload URL", blobstore.ErrNotFound)
	}
	return h.azurePut(w, r, p)
}

// BlobDownload serves GET and HEAD of a signed download URL,
// down/{hash}.{size}?org=… (with Range). The URL's signature is its
// authorization.
func (h *Handler) BlobDownload(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	q := r.URL.Query()
	org := q.Get("org")
	if !h.sign.check("down", org+"/"+id, q.Get("exp"), q.Get("sig"), h.now()) {
		return fmt.Errorf("%w: unknown or expired download URL", blobstore.ErrNotFound)
	}
	hash, sizeS, _ := strings.Cut(id, ".")
	size, err := blobstore.ParseSize(sizeS)
	if err != nil {
		return err
	}
	d, err := blobstore.NewDigest(hash, size)
	if err != nil {
		return err
	}
	return h.download(w, r, blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: d})
}

func (h *Handler) download(w http.ResponseWriter, r *http.Request, ref blobstore.Ref) error {
	size := ref.Digest.Size
	off, n, code := int64(0), size, http.StatusOK
	if rh := r.Header.Get("Range"); rh != "" {
		var err error
		if off, n, err = parseRange(rh, size); err != nil {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			return fmt.Errorf("%w (range not satisfiable)", err)
		}
		code = http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
	}
	rc, _, err := h.store.Get(r.Context(), ref, off, n)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(code)
	if r.Method == http.MethodGet {
		io.Copy(w, rc)
	}
	return nil
}

// azurePut implements the three Azure Blob writes the Azure SDK makes:
// Put Blob (the whole body), Put Block (?comp=block&blockid=) and Put Block
// List (?comp=blocklist with an XML list of block ids).
func (h *Handler) azurePut(w http.ResponseWriter, r *http.Request, p *pending) error {
	p.busy.Lock()
	defer p.busy.Unlock()
	q := r.URL.Query()
	switch q.Get("comp") {
	case "":
		if err := h.writeFile(p.path, r.Body); err != nil {
			return err
		}
	case "block":
		id := q.Get("blockid")
		raw, err := base64.StdEncoding.DecodeString(id)
		if err != nil || len(raw) == 0 || len(raw) > 64 {
			return fmt.Errorf("%w: blockid %q", blobstore.ErrInvalid, id)
		}
		if len(p.blocks) >= 50000 {
			return fmt.Errorf("%w: too many blocks", blobstore.ErrInvalid)
		}
		path := p.path + ".block." + hex.EncodeToString(raw)
		if err := h.writeFile(path, r.Body); err != nil {
			return err
		}
		p.blocks[id] = path
	case "blocklist":
		ids, err := parseBlockList(r.Body)
		if err != nil {
			return err
		}
		out, err := os.OpenFile(p.path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return fmt.Errorf("assemble blocks: %w", err)
		}
		defer out.Close()
		var total int64
		for _, id := range ids {
			bp, ok := p.blocks[id]
			if !ok {
				return fmt.Errorf("%w: block %q was not uploaded", blobstore.ErrInvalid, id)
			}
			in, err := os.Open(bp)
			if err != nil {
				return fmt.Errorf("assemble blocks: %w", err)
			}
			n, err := io.Copy(out, in)
			in.Close()
			total += n
			if err != nil {
				return fmt.Errorf("assemble blocks: %w", err)
			}
			if total > h.opts.MaxArchiveSize {
				return fmt.Errorf("%w: archive over %d bytes", blobstore.ErrTooLarge, h.opts.MaxArchiveSize)
			}
		}
	default:
		return fmt.Errorf("%w: comp=%q is not supported", blobstore.ErrInvalid, q.Get("comp"))
	}
	w.Header().Set("x-ms-request-id", strconv.FormatInt(h.now().UnixNano(), 36))
	w.Header().Set("x-ms-version", "2024-11-04")
	w.Header().Set("x-ms-request-server-encrypted", "false")
	w.Header().Set("ETag", `"0x`+strconv.FormatInt(h.now().UnixNano(), 16)+`"`)
	w.Header().Set("Last-Modified", h.now().UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusCreated)
	return nil
}

// maxBlockList bounds a Put Block List body.
const maxBlockList = 8 << 20

// parseBlockList reads a Put Block List body, <BlockList> with <Latest>,
// <Committed> or <Uncommitted> block ids (all mean "the block uploaded with
// this id" here), in order. Ids are trimmed of surrounding white space.
func parseBlockList(r io.Reader) ([]string, error) {
	var list struct {
		Items []struct {
			XMLName xml.Name
			ID      string `xml:",chardata"`
		} `xml:",any"`
	}
	if err := xml.NewDecoder(io.LimitReader(r, maxBlockList)).Decode(&list); err != nil {
		return nil, fmt.Errorf("%w: block list: %v", blobstore.ErrInvalid, err)
	}
	ids := make([]string, len(list.Items))
	for i, it := range list.Items {
		ids[i] = strings.TrimSpace(it.ID)
	}
	return ids, nil
}

func (h *Handler) writeFile(path string, body io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(f, io.LimitReader(body, h.opts.MaxArchiveSize+1))
	if err != nil {
		return fmt.Errorf("%w: upload body: %v", blobstore.ErrInvalid, err)
	}
	if n > h.opts.MaxArchiveSize {
		return fmt.Errorf("%w: archive over %d bytes", blobstore.ErrTooLarge, h.opts.MaxArchiveSize)
	}
	return nil
}
