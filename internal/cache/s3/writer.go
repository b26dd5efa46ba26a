package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

var errAborted = errors.New("upload abandoned")

// abortTimeout bounds the discarding of an abandoned multipart upload.
const abortTimeout = 30 * time.Second

// abortUpload discards a multipart upload in the background. A part the
// service was still receiving may outlive one abort, so it checks and
// aborts again (with backoff) until the upload is gone.
func (s *Store) abortUpload(key, id string) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
		defer cancel()
		wait := 50 * time.Millisecond
		for {
			err := s.c.AbortMultipart(ctx, key, id)
			if err == nil {
				ups, lerr := s.c.ListMultipart(ctx, key)
				if err = lerr; err == nil && !slices.ContainsFunc(ups, func(u Upload) bool { return u.UploadID == id }) {
					return
				}
			}
			select {
			case <-ctx.Done():
				s.log.Warn("abort multipart upload", "err", err)
				return
			case <-time.After(wait):
			}
			wait *= 2
		}
	}()
}

// writer streams a blob to the bucket as it is written: one PUT, or a
// multipart upload for blobs larger than the part size. It holds back the
// blob's last byte until Commit, so the service never receives a complete
// body that the checks in front of the store (blobstore.Verifying: the
// size and, for the CAS, the hash) refuse before calling Commit; Close
// without Commit aborts the request (and the multipart upload), so nothing
// partial ever becomes visible.
type writer struct {
	s    *Store
	ref  blobstore.Ref
	dir  string
	key  string
	size int64

	ctx    context.Context // the uploads', cancelled by Close
	cancel context.CancelFunc

	n        int64
	partSize int64 // == size for a single PUT
	uploadID string
	etags    []string
	part     *partUpload // in flight
	partN    int64       // bytes of the current part written
	held     []byte      // the last byte, until Commit
	done     bool
}

// partUpload is one request whose body is being written through a pipe.
type partUpload struct {
	pw   *io.PipeWriter
	res  chan partResult
	size int64
}

type partResult struct {
	etag string
	err  error
}

func (s *Store) newWriter(ctx context.Context, ref blobstore.Ref, dir string, size int64) *writer {
	uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &writer{s: s, ref: ref, dir: dir, key: s.key(dir, ref.Kind, &ref.Digest.Hash), size: size, ctx: uctx, cancel: cancel, partSize: size}
	if size > s.opts.PartSize {
		// At most 10,000 parts.
		w.partSize = max(s.opts.PartSize, (size+9999)/10000)
	}
	return w
}

func (w *writer) multipart() bool { return w.partSize < w.size }

// startPart starts the request of the next part (or of the whole blob).
func (w *writer) startPart() error {
	n := min(w.partSize, w.size-w.n)
	pr, pw := io.Pipe()
	p := &partUpload{pw: pw, res: make(chan partResult, 1), size: n}
	if w.multipart() && w.uploadID == "" {
		id, err := w.s.c.CreateMultipart(w.ctx, w.key)
		if err != nil {
			return err
		}
		w.uploadID = id
	}
	num := len(w.etags) + 1
	go func() {
		var r partResult
		if w.multipart() {
			r.etag, r.err = w.s.c.UploadPart(w.ctx, w.key, w.uploadID, num, n, pr)
		} else {
			hash := ""
			if w.ref.Kind == blobstore.KindCAS {
				hash = w.ref.Digest.Hash.String()
			}
			r.err = w.s.c.Put(w.ctx, w.key, n, hash, pr)
		}
		if r.err != nil {
			pr.CloseWithError(r.err)
		} else {
			pr.Close()
		}
		p.res <- r
	}()
	w.part, w.partN = p, 0
	return nil
}

// finishPart closes the current part's body and waits for its answer.
func (w *writer) finishPart() error {
	p := w.part
	w.part = nil
	p.pw.Close()
	r := <-p.res
	if r.err != nil {
		return r.err
	}
	w.etags = append(w.etags, r.etag)
	return nil
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("write %s: writer closed", w.ref)
	}
	written := 0
	for len(p) > 0 {
		if w.part == nil {
			if err := w.startPart(); err != nil {
				return written, err
			}
		}
		chunk := p[:min(int64(len(p)), w.part.size-w.partN)]
		send := chunk
		last := w.n+int64(len(chunk)) == w.size
		if last {
			send = chunk[:len(chunk)-1]
		}
		if _, err := w.part.pw.Write(send); err != nil {
			return written, fmt.Errorf("upload %s: %w", w.ref, err)
		}
		if last {
			w.held = []byte{chunk[len(chunk)-1]}
		}
		w.n += int64(len(chunk))
		w.partN += int64(len(chunk))
		written += len(chunk)
		p = p[len(chunk):]
		if w.partN == w.part.size && !last {
			if err := w.finishPart(); err != nil {
				return written, fmt.Errorf("upload %s: %w", w.ref, err)
			}
		}
	}
	return written, nil
}

// Commit implements blobstore.Writer.
func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return fmt.Errorf("commit %s: writer closed", w.ref)
	}
	err := w.complete()
	if err != nil {
		w.Close()
		return err
	}
	w.done = true
	w.cancel()
	victims := w.s.ledger.commit(w.dir, itemKey{w.ref.Kind, w.ref.Digest.Hash}, w.size, w.s.now())
	w.s.evict(ctx, victims)
	return nil
}

// complete sends the held byte and finishes the upload.
func (w *writer) complete() error {
	if w.size == 0 {
		return w.s.c.Put(w.ctx, w.key, 0, "", nil)
	}
	if _, err := w.part.pw.Write(w.held); err != nil {
		return fmt.Errorf("upload %s: %w", w.ref, err)
	}
	if err := w.finishPart(); err != nil {
		return fmt.Errorf("upload %s: %w", w.ref, err)
	}
	if w.multipart() {
		return w.s.c.CompleteMultipart(w.ctx, w.key, w.uploadID, w.etags)
	}
	return nil
}

// Close implements blobstore.Writer: without a Commit it aborts the upload.
func (w *writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	w.cancel()
	if w.part != nil {
		w.part.pw.CloseWithError(errAborted)
		<-w.part.res
		w.part = nil
	}
	if w.uploadID != "" {
		w.s.abortUpload(w.key, w.uploadID)
	}
	w.s.ledger.release(w.dir, w.size)
	return nil
}
