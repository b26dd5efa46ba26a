package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// spoolSegment is the size after which a spool starts a new segment file:
// acknowledged output is given back a segment at a time.
const spoolSegment = 4 << 20

// logSpool holds a job's output chunks on disk until the server
// acknowledges them: a slow or unreachable server costs the agent disk,
// within its bound, not memory. Chunks are appended to segment files in
// order; a segment is removed once every chunk in it is acknowledged.
// Its files are the agent's own (0600 in a 0700 directory), and hold the
// output already masked. Not safe for concurrent use (the logStreamer
// holds its lock).
type logSpool struct {
	dir   string
	segs  []*spoolFile
	index []spoolRef // unacknowledged chunks, in order
	bytes int64      // their data
	next  int        // number of the next segment file
}

type spoolFile struct {
	f    *os.File
	size int64
	// last is the sequence number of the segment's last chunk.
	last int64
}

type spoolRef struct {
	seq int64
	seg *spoolFile
	off int64
	n   int
}

// memoryUnacked bounds the output held in memory when there is no spool.
const memoryUnacked = 32 << 20

// logSpoolRoot is where jobs' spools go: <StateDir>/log-spool ("" without
// a state dir: output is held in memory).
func (c Config) logSpoolRoot() string {
	if c.StateDir == "" {
		return ""
	}
	return filepath.Join(c.StateDir, "log-spool")
}

// sweepSpools removes what a killed agent left under root: its jobs'
// leases are gone, and so is the use of their output.
func sweepSpools(root string) error {
	return os.RemoveAll(root)
}

func openSpool(dir string) (*logSpool, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("log spool: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("log spool: %w", err)
	}
	return &logSpool{dir: dir}, nil
}

// add appends a chunk.
func (s *logSpool) add(seq int64, data []byte) error {
	var seg *spoolFile
	if n := len(s.segs); n > 0 && s.segs[n-1].size < spoolSegment {
		seg = s.segs[n-1]
	} else {
		f, err := os.OpenFile(filepath.Join(s.dir, strconv.Itoa(s.next)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("log spool: %w", err)
		}
		s.next++
		seg = &spoolFile{f: f}
		s.segs = append(s.segs, seg)
	}
	if _, err := seg.f.WriteAt(data, seg.size); err != nil {
		return fmt.Errorf("log spool: %w", err)
	}
	s.index = append(s.index, spoolRef{seq: seq, seg: seg, off: seg.size, n: len(data)})
	seg.size += int64(len(data))
	seg.last = seq
	s.bytes += int64(len(data))
	return nil
}

// peek reads the oldest chunks, at most maxBytes of them (but one at
// least) and at most apiv1.MaxLogChunks, of lease fence.
func (s *logSpool) peek(fence int64, maxBytes int) ([]apiv1.LogChunk, error) {
	var out []apiv1.LogChunk
	size := 0
	for _, r := range s.index {
		if len(out) > 0 && size+r.n > maxBytes || len(out) == apiv1.MaxLogChunks {
			break
		}
		data := make([]byte, r.n)
		if _, err := r.seg.f.ReadAt(data, r.off); err != nil {
			return nil, fmt.Errorf("log spool: %w", err)
		}
		out = append(out, apiv1.LogChunk{Fence: fence, Seq: r.seq, Data: data})
		size += r.n
	}
	return out, nil
}

// ack drops the chunks up to and including seq; it reports whether any
// was.
func (s *logSpool) ack(seq int64) bool {
	i := 0
	for i < len(s.index) && s.index[i].seq <= seq {
		s.bytes -= int64(s.index[i].n)
		i++
	}
	if i == 0 {
		return false
	}
	s.index = s.index[i:]
	for len(s.segs) > 0 && s.segs[0].last <= seq && (len(s.segs) > 1 || len(s.index) == 0) {
		s.segs[0].f.Close()
		os.Remove(s.segs[0].f.Name())
		s.segs = s.segs[1:]
	}
	return true
}

// len is the number of chunks held.
func (s *logSpool) len() int { return len(s.index) }

// drop gives up every chunk held.
func (s *logSpool) drop() {
	if len(s.index) > 0 {
		s.ack(s.index[len(s.index)-1].seq)
	}
}

// close removes the spool's files.
func (s *logSpool) close() error {
	for _, seg := range s.segs {
		seg.f.Close()
	}
	s.segs, s.index, s.bytes = nil, nil, 0
	return os.RemoveAll(s.dir)
}
