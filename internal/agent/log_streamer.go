package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// uploadFunc sends chunks, in order (end: they are the workload's last),
// and returns the sequence number up to which the server holds every
// chunk of the lease, and whether the job's log is full (the server keeps
// nothing more).
type uploadFunc func(ctx context.Context, chunks []apiv1.LogChunk, end bool) (apiv1.LogsAck, error)

// maxChunkLines bounds the lines of a chunk.
const maxChunkLines = 1000

// logStreamerOptions configure a logStreamer.
type logStreamerOptions struct {
	fence    int64
	upload   uploadFunc
	maxChunk int // bytes of a chunk, at most
	maxBatch int // bytes of chunks in one upload, at most (but one chunk always goes)
	// maxUnacked bounds the bytes held until acknowledged: in memory, or
	// on disk in spoolDir when it is set.
	maxUnacked int
	spoolDir   string
	// flushInterval is how long output may wait before it is cut into a
	// chunk (when it does not fill one first).
	flushInterval time.Duration
	maxBackoff    time.Duration
	// mask lists the secrets the job was given, to replace in its output.
	mask []string
	log  *slog.Logger
}

// logStreamer is a job's output on its way to the control plane. It is the
// io.Writer the executor copies the workload's output to: Write masks the
// job's secrets, cuts the output into chunks numbered from 0 and keeps
// them (on disk, in a bounded spool, when the agent has one); run uploads
// them in order, retrying each batch until the server acknowledges it
// (the server stores a chunk sent twice once), so a slow or unreachable
// server only delays the output. Past maxUnacked bytes held, Write
// blocks, and so does the workload writing to its output pipe: output is
// neither dropped nor buffered without bound.
type logStreamer struct {
	opts logStreamerOptions
	mask *masker

	mu        sync.Mutex
	open      []byte     // the chunk being filled
	openLines int        // newlines in open
	queue     chunkQueue // cut, not yet acknowledged, in order
	nextSeq   int64
	held      int // bytes in open and queue
	timer     *time.Timer
	// finished: the workload is done; run returns once all is acknowledged.
	finished bool
	// lineOpen: the output written so far does not end with a newline;
	// endSent: the server knows the output has ended (its last line then
	// ends too).
	lineOpen bool
	endSent  bool
	// dropWrites: writes are discarded (the workload is being killed, or
	// uploads stopped for good).
	dropWrites bool
	dropped    int64 // bytes written but discarded
	unsent     int64 // bytes held when uploads stopped for good
	// full: the server's log of the job is full; output is discarded
	// (counted in past) rather than sent.
	full  bool
	past  int64
	wake  chan struct{} // to run: a chunk was cut, or finish was called
	freed chan struct{} // closed and replaced when writers may go on
}

// chunkQueue holds cut chunks until they are acknowledged: logSpool on
// disk, or memQueue.
type chunkQueue interface {
	add(seq int64, data []byte) error
	peek(fence int64, maxBytes int) ([]apiv1.LogChunk, error)
	ack(seq int64) bool
	len() int
	drop()
	close() error
}

func newLogStreamer(opts logStreamerOptions) *logStreamer {
	s := &logStreamer{opts: opts, mask: newMasker(opts.mask), wake: make(chan struct{}, 1), freed: make(chan struct{})}
	s.queue = &memQueue{}
	if opts.spoolDir != "" {
		spool, err := openSpool(opts.spoolDir)
		if err != nil {
			opts.log.Warn("job output kept in memory: no spool", "err", err)
		} else {
			s.queue = spool
		}
	}
	return s
}

// Write takes p, blocking while too much output waits for acknowledgement.
// It never fails: output that cannot be kept any more is counted and
// dropped, so that the workload never blocks on a dead pipe.
func (s *logStreamer) Write(p []byte) (int, error) {
	n := len(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full || s.dropWrites || s.finished {
		s.discardLocked(len(p))
		return n, nil
	}
	if s.mask != nil {
		p = s.mask.mask(p)
	}
	s.addLocked(p)
	return n, nil
}

func (s *logStreamer) discardLocked(n int) {
	if s.full {
		s.past += int64(n)
	} else {
		s.dropped += int64(n)
	}
}

// addLocked adds output to the open chunk, cutting full chunks and
// waiting while too much is held.
func (s *logStreamer) addLocked(p []byte) {
	for len(p) > 0 {
		if s.full || s.dropWrites {
			s.discardLocked(len(p))
			return
		}
		if s.held >= s.opts.maxUnacked {
			freed := s.freed
			s.mu.Unlock()
			<-freed
			s.mu.Lock()
			continue
		}
		k := min(len(p), s.opts.maxUnacked-s.held, s.opts.maxChunk-len(s.open))
		// A chunk holds at most maxChunkLines lines: the server writes a
		// chunk at once, and a chunk of many short lines would hold its
		// store's writer (SQLite's only one) for seconds.
		lines := 0
		for i, c := range p[:k] {
			if c == '\n' {
				lines++
				if s.openLines+lines == maxChunkLines {
					k = i + 1
					break
				}
			}
		}
		if len(s.open) == 0 {
			s.armFlushLocked()
		}
		s.open = append(s.open, p[:k]...)
		s.openLines += lines
		s.held += k
		s.lineOpen = p[k-1] != '\n'
		p = p[k:]
		if len(s.open) >= s.opts.maxChunk || s.openLines >= maxChunkLines {
			s.sealLocked()
		}
	}
}

// armFlushLocked starts the wait after which the open chunk is cut.
func (s *logStreamer) armFlushLocked() {
	if s.timer == nil {
		s.timer = time.AfterFunc(s.opts.flushInterval, s.flush)
		return
	}
	s.timer.Reset(s.opts.flushInterval)
}

// sealLocked turns the open chunk, if any, into the next numbered chunk.
func (s *logStreamer) sealLocked() {
	if len(s.open) == 0 {
		return
	}
	if err := s.queue.add(s.nextSeq, s.open); err != nil {
		// The spool cannot take it (a full disk): the chunk is lost, and
		// said to be.
		s.opts.log.Error("job output lost: the spool failed", "err", err, "bytes", len(s.open))
		s.held -= len(s.open)
		s.dropped += int64(len(s.open))
		s.open, s.openLines = nil, 0
		return
	}
	s.nextSeq++
	s.open, s.openLines = nil, 0
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes every blocked writer.
func (s *logStreamer) broadcastLocked() {
	close(s.freed)
	s.freed = make(chan struct{})
}

// abortWrites makes Write discard from now on, without waiting: the
// workload is being killed. What is held is still uploaded.
func (s *logStreamer) abortWrites() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropWrites = true
	s.broadcastLocked()
}

// finish says the workload has ended: what the masker held goes out, the
// last chunk is cut and run returns once every chunk is acknowledged.
func (s *logStreamer) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mask != nil && !s.dropWrites && !s.full {
		if rest := s.mask.flush(); len(rest) > 0 {
			s.addLocked(rest)
		}
	}
	s.finished = true
	s.sealLocked()
	if s.timer != nil {
		s.timer.Stop()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *logStreamer) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealLocked()
}

// nextBatch returns the oldest unacknowledged chunks, at most maxBatch
// bytes of them (but at least one), whether they are the workload's last
// (end; with no chunks when the last line still needs ending), and
// whether everything is done.
func (s *logStreamer) nextBatch() (batch []apiv1.LogChunk, end, done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch, err = s.queue.peek(s.opts.fence, s.opts.maxBatch)
	if err != nil {
		return nil, false, false, err
	}
	if !s.finished {
		return batch, false, false, nil
	}
	if s.full {
		return batch, false, len(batch) == 0, nil
	}
	if len(batch) > 0 {
		return batch, len(batch) == s.queue.len(), false, nil
	}
	if s.lineOpen && !s.endSent {
		return nil, true, false, nil
	}
	return nil, false, true, nil
}

// ack drops the chunks the server holds; it reports whether any was.
func (s *logStreamer) ack(seq int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	bytesBefore := s.queuedBytesLocked()
	if !s.queue.ack(seq) {
		return false
	}
	s.held -= bytesBefore - s.queuedBytesLocked()
	s.broadcastLocked()
	return true
}

func (s *logStreamer) queuedBytesLocked() int {
	switch q := s.queue.(type) {
	case *logSpool:
		return int(q.bytes)
	case *memQueue:
		return q.bytes
	}
	return 0
}

// stopUploads ends the stream for good: what is held is given up and
// writes are discarded from now on.
func (s *logStreamer) stopUploads() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsent += int64(s.held)
	s.queue.drop()
	s.open, s.held = nil, 0
	s.dropWrites = true
	if s.timer != nil {
		s.timer.Stop()
	}
	if err := s.queue.close(); err != nil {
		s.opts.log.Warn("remove the log spool", "err", err)
	}
	s.broadcastLocked()
}

// logFull: the server keeps no more of the job's output. What is held and
// what is written from now on is discarded, not sent.
func (s *logStreamer) logFull() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return
	}
	s.full = true
	s.past += int64(s.held)
	s.queue.drop()
	s.open, s.held = nil, 0
	s.broadcastLocked()
}

// pastLimit returns the bytes not sent because the job's log was full.
func (s *logStreamer) pastLimit() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.past
}

// lost returns the bytes of output that never reached the server: those
// held when uploads stopped, and those written after that or after
// abortWrites.
func (s *logStreamer) lost() (unsent, dropped int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unsent, s.dropped
}

// run uploads chunks until finish was called and every chunk is
// acknowledged (it returns nil), or until ctx ends or an upload fails for
// good (it returns why). Transient failures are retried with backoff, or
// after the server's Retry-After. When run returns, uploads have stopped,
// the spool is gone and Write no longer blocks.
func (s *logStreamer) run(ctx context.Context) error {
	defer s.stopUploads()
	for failures := 0; ; {
		batch, end, done, err := s.nextBatch()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if len(batch) == 0 && !end {
			select {
			case <-s.wake:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			continue
		}
		err = s.uploadOnce(ctx, batch, end)
		switch {
		case err == nil:
			failures = 0
			continue
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case !retryable(err) && !errors.Is(err, errNoProgress):
			return err
		}
		s.opts.log.Warn("upload logs; will retry", "err", err, "failures", failures+1)
		// A busy server says when to come back (429 and Retry-After).
		if !pause(ctx, max(apiclient.Backoff(failures, s.opts.maxBackoff), apiclient.RetryAfter(err))) {
			return context.Cause(ctx)
		}
		failures++
	}
}

// uploadOnce sends one batch; an answer that acknowledges none of it is an
// error, retried like a transient one.
func (s *logStreamer) uploadOnce(ctx context.Context, batch []apiv1.LogChunk, end bool) error {
	a, err := s.opts.upload(ctx, batch, end)
	if err != nil {
		return err
	}
	if end && (len(batch) == 0 || a.Seq >= batch[len(batch)-1].Seq) {
		s.mu.Lock()
		s.endSent = true
		s.mu.Unlock()
	}
	if len(batch) > 0 && !s.ack(a.Seq) {
		return fmt.Errorf("upload logs: the server acknowledged up to chunk %d, none of chunks %d..%d: %w",
			a.Seq, batch[0].Seq, batch[len(batch)-1].Seq, errNoProgress)
	}
	if a.Full {
		s.logFull()
	}
	return nil
}

// errNoProgress: an upload was answered but acknowledged nothing new.
var errNoProgress = errors.New("no progress")

// memQueue keeps chunks in memory (an agent without a spool).
type memQueue struct {
	chunks []apiv1.LogChunk
	bytes  int
}

func (q *memQueue) add(seq int64, data []byte) error {
	q.chunks = append(q.chunks, apiv1.LogChunk{Seq: seq, Data: data})
	q.bytes += len(data)
	return nil
}

func (q *memQueue) peek(fence int64, maxBytes int) ([]apiv1.LogChunk, error) {
	var out []apiv1.LogChunk
	size := 0
	for _, c := range q.chunks {
		if len(out) > 0 && size+len(c.Data) > maxBytes || len(out) == apiv1.MaxLogChunks {
			break
		}
		c.Fence = fence
		out = append(out, c)
		size += len(c.Data)
	}
	return out, nil
}

func (q *memQueue) ack(seq int64) bool {
	i := 0
	for i < len(q.chunks) && q.chunks[i].Seq <= seq {
		q.bytes -= len(q.chunks[i].Data)
		i++
	}
	q.chunks = q.chunks[i:]
	return i > 0
}

func (q *memQueue) len() int { return len(q.chunks) }

func (q *memQueue) drop() { q.chunks, q.bytes = nil, 0 }

func (q *memQueue) close() error { return nil }
