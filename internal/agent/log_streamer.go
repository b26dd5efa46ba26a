package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// logStreamerOptions configure a logStreamer.
type logStreamerOptions struct {
	fence         int64
	upload        uploadFunc
	maxChunk      int // bytes of a chunk, at most
	maxBatch      int // bytes of chunks in one upload, at most (but one chunk always goes)
	maxUnacked    int // bytes held until acknowledged, at most
	flushInterval time.Duration
	maxBackoff    time.Duration
	log           *slog.Logger
}

// logStreamer is a job's output on its way to the control plane. It is the
// io.Writer the executor copies the workload's output to: Write cuts the
// output into chunks numbered from 0, and run uploads them in order,
// retrying each batch until the server acknowledges it (the server stores a
// chunk sent twice once). Chunks stay in memory until acknowledged; past
// maxUnacked bytes, Write blocks, and so does the workload writing to its
// output pipe: output is neither dropped nor buffered without bound.
type logStreamer struct {
	opts logStreamerOptions

	mu      sync.Mutex
	open    []byte           // the chunk being filled
	sealed  []apiv1.LogChunk // cut, not yet acknowledged, in order
	nextSeq int64
	held    int // bytes in open and sealed
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
	wake  chan struct{} // to run: a chunk was sealed, or finish was called
	freed chan struct{} // closed and replaced when writers may go on
}

func newLogStreamer(opts logStreamerOptions) *logStreamer {
	return &logStreamer{opts: opts, wake: make(chan struct{}, 1), freed: make(chan struct{})}
}

// Write takes p, blocking while too much output waits for acknowledgement.
// It never fails: output that cannot be kept any more is counted and
// dropped, so that the workload never blocks on a dead pipe.
func (s *logStreamer) Write(p []byte) (int, error) {
	n := len(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(p) > 0 {
		if s.full {
			s.past += int64(len(p))
			return n, nil
		}
		if s.dropWrites || s.finished {
			s.dropped += int64(len(p))
			return n, nil
		}
		if s.held >= s.opts.maxUnacked {
			freed := s.freed
			s.mu.Unlock()
			<-freed
			s.mu.Lock()
			continue
		}
		k := min(len(p), s.opts.maxUnacked-s.held, s.opts.maxChunk-len(s.open))
		s.open = append(s.open, p[:k]...)
		s.lineOpen = p[k-1] != '\n'
		s.held += k
		p = p[k:]
		if len(s.open) >= s.opts.maxChunk {
			s.sealLocked()
		}
	}
	return n, nil
}

// sealLocked turns the open chunk, if any, into the next numbered chunk.
func (s *logStreamer) sealLocked() {
	if len(s.open) == 0 {
		return
	}
	s.sealed = append(s.sealed, apiv1.LogChunk{Fence: s.opts.fence, Seq: s.nextSeq, Data: s.open})
	s.nextSeq++
	s.open = nil
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

// finish says the workload has ended: the last chunk is cut and run
// returns once every chunk is acknowledged.
func (s *logStreamer) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
	s.sealLocked()
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
func (s *logStreamer) nextBatch() (batch []apiv1.LogChunk, end, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := 0
	for _, c := range s.sealed {
		if len(batch) > 0 && size+len(c.Data) > s.opts.maxBatch {
			break
		}
		batch = append(batch, c)
		size += len(c.Data)
	}
	if !s.finished {
		return batch, false, false
	}
	if s.full {
		return batch, false, len(batch) == 0
	}
	if len(batch) > 0 {
		return batch, len(batch) == len(s.sealed), false
	}
	if s.lineOpen && !s.endSent {
		return nil, true, false
	}
	return nil, false, true
}

// ack drops the chunks the server holds; it reports whether any was.
func (s *logStreamer) ack(seq int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.sealed) && s.sealed[i].Seq <= seq {
		s.held -= len(s.sealed[i].Data)
		i++
	}
	if i == 0 {
		return false
	}
	s.sealed = slices.Delete(s.sealed, 0, i)
	s.broadcastLocked()
	return true
}

// stopUploads ends the stream for good: what is held is given up and
// writes are discarded from now on.
func (s *logStreamer) stopUploads() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsent += int64(s.held)
	s.open, s.sealed, s.held = nil, nil, 0
	s.dropWrites = true
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
	s.open, s.sealed, s.held = nil, nil, 0
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
// good (it returns why). Transient failures are retried with backoff. When
// run returns, uploads have stopped and Write no longer blocks.
func (s *logStreamer) run(ctx context.Context) error {
	defer s.stopUploads()
	tick := time.NewTicker(s.opts.flushInterval)
	defer tick.Stop()
	for failures := 0; ; {
		batch, end, done := s.nextBatch()
		if done {
			return nil
		}
		if len(batch) == 0 && !end {
			select {
			case <-s.wake:
			case <-tick.C:
				s.flush()
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			continue
		}
		err := s.uploadOnce(ctx, batch, end)
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
