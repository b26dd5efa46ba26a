package clickhouse

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ClickHouse's RowBinary format is how rows go in and come back: every
// value in the column's own binary form, strings as a varint length and
// their bytes, integers little-endian. Nothing is escaped, so no text of
// a row (job output is anything) is ever syntax.

// rowWriter builds a RowBinary payload.
type rowWriter struct{ b []byte }

func (w *rowWriter) str(s string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *rowWriter) bytes(s []byte) {
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *rowWriter) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *rowWriter) i64(v int64)  { w.b = binary.LittleEndian.AppendUint64(w.b, uint64(v)) }
func (w *rowWriter) u64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }

func (w *rowWriter) u8(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

// errShort: a RowBinary answer ended inside a row.
var errShort = errors.New("clickhouse: RowBinary answer cut short")

// maxValue bounds one string of an answer: a line is at most 64 KiB and a
// chunk 1 MiB, so more is a corrupt (or hostile) answer, not a reason to
// allocate.
const maxValue = 16 << 20

// rowReader reads a RowBinary answer: untrusted input (from a server
// across the network), so every length is checked.
type rowReader struct {
	b   []byte
	err error
}

func (r *rowReader) more() bool { return r.err == nil && len(r.b) > 0 }

func (r *rowReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = errShort
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *rowReader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errShort
		return nil
	}
	if n > maxValue {
		r.err = fmt.Errorf("clickhouse: a value of %d bytes in an answer", n)
		return nil
	}
	r.b = r.b[k:]
	return r.take(int(n))
}

func (r *rowReader) str() string { return string(r.bytes()) }

func (r *rowReader) i64() int64 { return int64(r.u64()) }

func (r *rowReader) u64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *rowReader) u8() bool {
	b := r.take(1)
	return b != nil && b[0] != 0
}
