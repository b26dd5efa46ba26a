package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// uploadIDAlphabet spells upload ids (lowercase base32 without the
// letters that read like digits).
const uploadIDAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var uploadIDEncoding = base32.NewEncoding(uploadIDAlphabet).WithPadding(base32.NoPadding)

// maxUploadsPerOrg bounds an org's upload sessions in progress.
const maxUploadsPerOrg = 128

// upload is a push's blob upload session: the bytes so far in a
// temporary file, hashed as they arrive. It belongs to one org and one
// repository; another org's request for its id is answered as if it did
// not exist.
type upload struct {
	id, org, name string
	file          *os.File
	h             hash.Hash
	size          int64
	charged       int64 // bytes charged to the org's budget
	last          time.Time
	busy          bool
}

// uploads holds the upload sessions of this process (a push goes to one
// replica: behind a load balancer, make it sticky for /v2/). An org's
// sessions hold at most max bytes together (the largest blob): a push of
// several large layers at once fits, a token cannot fill the disk.
type uploads struct {
	dir string
	max int64
	now func() time.Time

	mu       sync.Mutex
	m        map[string]*upload
	perOrg   map[string]int
	orgBytes map[string]int64
}

func newUploads(dir string, max int64, now func() time.Time) *uploads {
	return &uploads{dir: dir, max: max, now: now, m: map[string]*upload{}, perOrg: map[string]int{}, orgBytes: map[string]int64{}}
}

// charge adds n bytes of u to its org's uploads, refusing past the
// budget; remove gives them back.
func (us *uploads) charge(u *upload, n int64) error {
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.orgBytes[u.org]+n > us.max {
		return fmt.Errorf("%w: this org's uploads in progress would hold more than %d bytes; finish or cancel some", blobstore.ErrTooLarge, us.max)
	}
	us.orgBytes[u.org] += n
	u.charged += n
	return nil
}

// budgetWriter charges what passes to the upload's org.
type budgetWriter struct {
	us *uploads
	u  *upload
}

func (b budgetWriter) Write(p []byte) (int, error) {
	if err := b.us.charge(b.u, int64(len(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

func newUploadID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return uploadIDEncoding.EncodeToString(b)
}

func (us *uploads) create(org, name string) (*upload, error) {
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.perOrg[org] >= maxUploadsPerOrg {
		return nil, ociError(http.StatusTooManyRequests, codeTooManyRequests, "more than %d uploads in progress for this org; finish or cancel some", maxUploadsPerOrg)
	}
	f, err := os.CreateTemp(us.dir, "upload-")
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	os.Remove(f.Name()) // the descriptor is enough; a crash leaves nothing
	u := &upload{id: newUploadID(), org: org, name: name, file: f, h: sha256.New(), last: us.now(), busy: true}
	us.m[u.id] = u
	us.perOrg[org]++
	return u, nil
}

// take returns the session id of org's repository name for one request
// (a session serves one request at a time); put it back with done.
func (us *uploads) take(id, org, name string) (*upload, error) {
	us.mu.Lock()
	defer us.mu.Unlock()
	u, ok := us.m[id]
	if !ok || u.org != org || u.name != name {
		return nil, fmt.Errorf("%w: %s", errUploadUnknown, id)
	}
	if u.busy {
		return nil, ociError(http.StatusConflict, codeBlobUploadInvalid, "upload %s is busy with another request", id)
	}
	u.busy = true
	return u, nil
}

func (us *uploads) done(u *upload) {
	us.mu.Lock()
	u.busy = false
	u.last = us.now()
	us.mu.Unlock()
}

// remove ends a session and deletes its file.
func (us *uploads) remove(u *upload) {
	us.mu.Lock()
	if us.m[u.id] == u {
		delete(us.m, u.id)
		if us.perOrg[u.org]--; us.perOrg[u.org] <= 0 {
			delete(us.perOrg, u.org)
		}
		if us.orgBytes[u.org] -= u.charged; us.orgBytes[u.org] <= 0 {
			delete(us.orgBytes, u.org)
		}
	}
	us.mu.Unlock()
	u.file.Close()
}

// sweep removes sessions idle longer than idle and returns how many.
func (us *uploads) sweep(idle time.Duration) int {
	us.mu.Lock()
	var old []*upload
	for _, u := range us.m {
		if !u.busy && us.now().Sub(u.last) > idle {
			old = append(old, u)
		}
	}
	us.mu.Unlock()
	for _, u := range old {
		us.remove(u)
	}
	return len(old)
}

func (us *uploads) closeAll() {
	us.mu.Lock()
	all := make([]*upload, 0, len(us.m))
	for _, u := range us.m {
		all = append(all, u)
	}
	us.mu.Unlock()
	for _, u := range all {
		us.remove(u)
	}
}

// appendBody adds a request body to the session.
func (us *uploads) appendBody(u *upload, body io.Reader) error {
	n, err := io.Copy(io.MultiWriter(budgetWriter{us, u}, u.file, u.h), io.LimitReader(body, us.max-u.size+1))
	u.size += n
	if errors.Is(err, blobstore.ErrTooLarge) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: upload %s: %v", errUploadBroken, u.id, err)
	}
	if u.size > us.max {
		return fmt.Errorf("%w: upload over %d bytes", blobstore.ErrTooLarge, us.max)
	}
	return nil
}

// startUpload serves POST /v2/<name>/blobs/uploads/: a cross-repository
// mount (?mount=&from=) of a blob the org holds, a monolithic upload
// (?digest=, the body is the blob), or a new session.
func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, c *call) error {
	ctx := req.Context()
	q := req.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := ParseDigest(m)
		if err != nil {
			return err
		}
		// Any repository of the org: the org's store is one namespace.
		missing, err := r.store.FindMissing(ctx, c.repo.Org, blobstore.KindCAS, []blobstore.Digest{{Hash: d.Hash, Size: -1}})
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			blobCreated(w, c.t.Name, d)
			return nil
		}
	}
	u, err := r.uploads.create(c.repo.Org, c.t.Name)
	if err != nil {
		return err
	}
	if dg := q.Get("digest"); dg != "" {
		return r.completeUpload(w, req, c, u, dg)
	}
	r.uploads.done(u)
	uploadAccepted(w, c.t.Name, u, http.StatusAccepted)
	return nil
}

// patchUpload appends a chunk (its Content-Range, when given, must
// start where the session ends).
func (r *Registry) patchUpload(w http.ResponseWriter, req *http.Request, c *call) error {
	u, err := r.uploads.take(c.t.Upload, c.repo.Org, c.t.Name)
	if err != nil {
		return err
	}
	defer r.uploads.done(u)
	if cr := req.Header.Get("Content-Range"); cr != "" {
		start, _, err := parseContentRange(cr)
		if err != nil || start != u.size {
			w.Header().Set("Range", uploadRange(u))
			w.Header().Set("Location", uploadLocation(c.t.Name, u))
			return ociError(http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid, "chunk starts at %q; the upload has %d bytes", clip(cr), u.size)
		}
	}
	if err := r.uploads.appendBody(u, req.Body); err != nil {
		r.uploads.remove(u)
		return err
	}
	uploadAccepted(w, c.t.Name, u, http.StatusAccepted)
	return nil
}

// finishUpload serves PUT …/uploads/<id>?digest=: the last chunk (if
// any), then the digest check and the store.
func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, c *call) error {
	u, err := r.uploads.take(c.t.Upload, c.repo.Org, c.t.Name)
	if err != nil {
		return err
	}
	return r.completeUpload(w, req, c, u, req.URL.Query().Get("digest"))
}

// completeUpload ends a session that the caller took: whatever happens,
// the session is gone afterwards.
func (r *Registry) completeUpload(w http.ResponseWriter, req *http.Request, c *call, u *upload, digest string) error {
	defer r.uploads.remove(u)
	d, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	if err := r.uploads.appendBody(u, req.Body); err != nil {
		return err
	}
	var got blobstore.Hash
	u.h.Sum(got[:0])
	if got != d.Hash {
		return ociError(http.StatusBadRequest, codeDigestInvalid, "the uploaded content hashes to sha256:%s, not %s", got, d)
	}
	ref := blobstore.Ref{Org: c.repo.Org, Kind: blobstore.KindCAS, Digest: blobstore.Digest{Hash: d.Hash, Size: u.size}}
	if err := blobstore.Put(req.Context(), r.store, ref, u.size, io.NewSectionReader(u.file, 0, u.size)); err != nil {
		return err
	}
	blobCreated(w, c.t.Name, d)
	return nil
}

func (r *Registry) uploadStatus(w http.ResponseWriter, req *http.Request, c *call) error {
	u, err := r.uploads.take(c.t.Upload, c.repo.Org, c.t.Name)
	if err != nil {
		return err
	}
	defer r.uploads.done(u)
	uploadAccepted(w, c.t.Name, u, http.StatusNoContent)
	return nil
}

func (r *Registry) cancelUpload(w http.ResponseWriter, req *http.Request, c *call) error {
	u, err := r.uploads.take(c.t.Upload, c.repo.Org, c.t.Name)
	if err != nil {
		return err
	}
	r.uploads.remove(u)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func uploadLocation(name string, u *upload) string {
	return PathPrefix + name + "/blobs/uploads/" + u.id
}

// uploadRange is the Range header of a session: the bytes it holds,
// "0-0" when none (as distribution writes it, and docker expects).
func uploadRange(u *upload) string {
	return "0-" + strconv.FormatInt(max(u.size-1, 0), 10)
}

func uploadAccepted(w http.ResponseWriter, name string, u *upload, status int) {
	h := w.Header()
	h.Set("Location", uploadLocation(name, u))
	h.Set("Range", uploadRange(u))
	h.Set("Docker-Upload-UUID", u.id)
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
}

func blobCreated(w http.ResponseWriter, name string, d Digest) {
	h := w.Header()
	h.Set("Location", PathPrefix+name+"/blobs/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

var errUploadBroken = errors.New("upload interrupted")
