package srcsync

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The client's state file: a small binary format (gob was the slowest part
// of a one-file sync). Everything is length-prefixed; decoding checks
// every bound and every path.
const stateMagic = "nimbus-srcsync-state-v1\n"

type stateFile struct {
	SessionID string
	Version   string
	Synced    Manifest
	Cache     map[string]cacheEntry
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEntry(b []byte, e Entry) []byte {
	flags := byte(e.Kind)
	if e.Exec {
		flags |= 0x80
	}
	b = append(b, flags)
	switch e.Kind {
	case Regular:
		b = binary.AppendVarint(b, e.Size)
		b = append(b, e.Digest[:]...)
	case Symlink:
		b = appendString(b, e.Target)
	}
	return b
}

func (s stateFile) encode() []byte {
	b := make([]byte, 0, 64*(len(s.Synced)+len(s.Cache)))
	b = append(b, stateMagic...)
	b = appendString(b, s.SessionID)
	b = appendString(b, s.Version)
	b = binary.AppendUvarint(b, uint64(len(s.Synced)))
	for p, e := range s.Synced {
		b = appendString(b, p)
		b = appendEntry(b, e)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Cache)))
	for p, c := range s.Cache {
		b = appendString(b, p)
		b = appendEntry(b, c.Entry)
		b = binary.AppendVarint(b, c.Key.Size)
		b = binary.AppendVarint(b, c.Key.Mtime)
		b = binary.AppendVarint(b, c.Key.Ctime)
		b = binary.AppendUvarint(b, c.Key.Ino)
		b = binary.AppendUvarint(b, uint64(c.Key.Mode))
		racy := byte(0)
		if c.Racy {
			racy = 1
		}
		b = append(b, racy)
	}
	return b
}

var errCorrupt = errors.New("corrupt sync state")

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errCorrupt
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string { return string(r.bytes(r.uvarint())) }

func (r *reader) entry() Entry {
	flags := r.bytes(1)
	if r.err != nil {
		return Entry{}
	}
	e := Entry{Kind: Kind(flags[0] & 0x7f), Exec: flags[0]&0x80 != 0}
	switch e.Kind {
	case Regular:
		e.Size = r.varint()
		copy(e.Digest[:], r.bytes(uint64(len(e.Digest))))
	case Symlink:
		e.Target = r.string()
	case Dir:
	default:
		r.err = errCorrupt
	}
	return e
}

func (r *reader) count() int {
	n := r.uvarint()
	if n > MaxEntries {
		r.err = errCorrupt
		return 0
	}
	return int(n)
}

func decodeState(b []byte) (stateFile, error) {
	if len(b) < len(stateMagic) || string(b[:len(stateMagic)]) != stateMagic {
		return stateFile{}, errCorrupt
	}
	r := &reader{b: b[len(stateMagic):]}
	s := stateFile{SessionID: r.string(), Version: r.string()}
	n := r.count()
	s.Synced = make(Manifest, n)
	for i := 0; i < n && r.err == nil; i++ {
		p := r.string()
		s.Synced[p] = r.entry()
		if r.err == nil && ValidatePath(p) != nil {
			r.err = fmt.Errorf("%w: path %q", errCorrupt, p)
		}
	}
	n = r.count()
	s.Cache = make(map[string]cacheEntry, n)
	for i := 0; i < n && r.err == nil; i++ {
		p := r.string()
		var c cacheEntry
		c.Entry = r.entry()
		c.Key.Size = r.varint()
		c.Key.Mtime = r.varint()
		c.Key.Ctime = r.varint()
		c.Key.Ino = r.uvarint()
		c.Key.Mode = uint32(r.uvarint())
		if racy := r.bytes(1); len(racy) == 1 {
			c.Racy = racy[0] == 1
		}
		if r.err == nil && (ValidatePath(p) != nil || c.Entry.Kind != Regular) {
			r.err = fmt.Errorf("%w: cache path %q", errCorrupt, p)
		}
		s.Cache[p] = c
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: trailing data", errCorrupt)
	}
	return s, r.err
}
