package apiv1

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ContentTypeLogs is the media type of the binary form of Logs, which
// POST /api/v1/agent/jobs/{id}/logs takes besides JSON. Agents send it:
// the output travels as it is, where JSON would carry it in base64 and
// make the server scan it three times.
//
// The form, its integers varints as encoding/binary writes them:
//
//	magic    4 bytes "NLOG"
//	version  1 byte, 1
//	flags    1 byte: bit 0 is End, the others are 0
//	fence    signed varint
//	count    unsigned varint: the number of chunks
//	count times:
//	  seq    unsigned varint, at most 2^63-1
//	  length unsigned varint
//	  data   length bytes
//
// and nothing after the last chunk. Every chunk is of the request's fence.
const ContentTypeLogs = "application/vnd.nimbus.logs"

// MaxLogChunks bounds the chunks of one logs upload, in either form: a
// chunk decodes to a LogChunk of ~50 bytes whatever its size, so the
// bound keeps what an upload costs the server in memory near its body's
// size. An agent's backlog of small chunks goes in several uploads.
const MaxLogChunks = 10_000

const (
	logsMagic   = "NLOG"
	logsVersion = 1
	logsFlagEnd = 1 << 0
	// logsHeader: magic, version and flags.
	logsHeader = len(logsMagic) + 2
)

// AppendLogsBinary appends the binary form (ContentTypeLogs) of req to
// dst. A chunk's Fence must be 0 or req's, and its Seq ≥ 0.
func AppendLogsBinary(dst []byte, req Logs) ([]byte, error) {
	n := logsHeader + 2*binary.MaxVarintLen64
	for _, c := range req.Chunks {
		n += 2*binary.MaxVarintLen64 + len(c.Data)
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, logsMagic...)
	var flags byte
	if req.End {
		flags |= logsFlagEnd
	}
	dst = append(dst, logsVersion, flags)
	dst = binary.AppendVarint(dst, req.Fence)
	dst = binary.AppendUvarint(dst, uint64(len(req.Chunks)))
	for i, c := range req.Chunks {
		if c.Seq < 0 {
			return nil, fmt.Errorf("chunks[%d]: seq %d is negative", i, c.Seq)
		}
		if c.Fence != 0 && c.Fence != req.Fence {
			return nil, fmt.Errorf("chunks[%d]: fence %d, not the request's %d", i, c.Fence, req.Fence)
		}
		dst = binary.AppendUvarint(dst, uint64(c.Seq))
		dst = binary.AppendUvarint(dst, uint64(len(c.Data)))
		dst = append(dst, c.Data...)
	}
	return dst, nil
}

// DecodeLogsBinary reads the binary form (ContentTypeLogs) of a Logs from
// body, which must hold exactly one. Each chunk's Data is a slice of body,
// not a copy, and its Fence is the request's. A chunk's data past maxChunk
// bytes is an error, as are bytes after the last chunk.
func DecodeLogsBinary(body []byte, maxChunk int) (Logs, error) {
	var req Logs
	if len(body) < logsHeader || string(body[:len(logsMagic)]) != logsMagic {
		return req, errors.New("binary logs: the body does not start with the magic \"NLOG\", a version and flags")
	}
	if v := body[len(logsMagic)]; v != logsVersion {
		return req, fmt.Errorf("binary logs: version %d; this server reads version %d", v, logsVersion)
	}
	flags := body[len(logsMagic)+1]
	if flags&^logsFlagEnd != 0 {
		return req, fmt.Errorf("binary logs: flags %#02x: unknown bits", flags)
	}
	req.End = flags&logsFlagEnd != 0
	d := logsDecoder{b: body, off: logsHeader}
	var err error
	if req.Fence, err = d.varint("fence"); err != nil {
		return req, err
	}
	count, err := d.uvarint("chunk count")
	if err != nil {
		return req, err
	}
	// A chunk takes 2 bytes at least (its seq and length): a count the body
	// cannot hold is refused before anything is allocated for it.
	if count > MaxLogChunks {
		return req, fmt.Errorf("binary logs: chunk count %d: at most %d", count, MaxLogChunks)
	}
	if count > uint64(len(body)-d.off)/2 {
		return req, fmt.Errorf("binary logs: chunk count %d: the %d bytes left hold fewer", count, len(body)-d.off)
	}
	// Each LogChunk is larger than its 2 bytes: the slice grows with the
	// chunks read rather than from the count.
	req.Chunks = make([]LogChunk, 0, min(count, 1024))
	for i := range int(count) {
		seq, err := d.uvarint("chunks[%d] seq", i)
		if err != nil {
			return req, err
		}
		if seq > math.MaxInt64 {
			return req, fmt.Errorf("binary logs: chunks[%d] seq %d: at most 2^63-1", i, seq)
		}
		n, err := d.uvarint("chunks[%d] length", i)
		if err != nil {
			return req, err
		}
		if n > uint64(maxChunk) {
			return req, fmt.Errorf("binary logs: chunks[%d]: data of %d bytes, at most %d", i, n, maxChunk)
		}
		if left := len(body) - d.off; n > uint64(left) {
			return req, fmt.Errorf("binary logs: chunks[%d]: data of %d bytes runs past the end of the body (%d bytes left)", i, n, left)
		}
		end := d.off + int(n)
		req.Chunks = append(req.Chunks, LogChunk{Fence: req.Fence, Seq: int64(seq), Data: body[d.off:end:end]})
		d.off = end
	}
	if d.off != len(body) {
		return req, fmt.Errorf("binary logs: %d bytes after the last chunk", len(body)-d.off)
	}
	return req, nil
}

// logsDecoder reads varints from b at off.
type logsDecoder struct {
	b   []byte
	off int
}

// uvarint and varint read one varint; what (a format of args) names it
// in errors.
func (d *logsDecoder) uvarint(what string, args ...any) (uint64, error) {
	v, n := binary.Uvarint(d.b[d.off:])
	if err := d.advance(n, what, args); err != nil {
		return 0, err
	}
	return v, nil
}

func (d *logsDecoder) varint(what string, args ...any) (int64, error) {
	v, n := binary.Varint(d.b[d.off:])
	if err := d.advance(n, what, args); err != nil {
		return 0, err
	}
	return v, nil
}

// advance moves past a varint of n bytes, as encoding/binary reports it
// (0: the body ends inside it, < 0: over 64 bits).
func (d *logsDecoder) advance(n int, what string, args []any) error {
	switch {
	case n == 0:
		return fmt.Errorf("binary logs: %s at byte %d: the body ends inside it", fmt.Sprintf(what, args...), d.off)
	case n < 0:
		return fmt.Errorf("binary logs: %s at byte %d: a varint over 64 bits", fmt.Sprintf(what, args...), d.off)
	}
	d.off += n
	return nil
}
