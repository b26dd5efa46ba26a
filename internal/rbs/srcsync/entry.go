package srcsync

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
)

// Kind is the type of a workspace entry.
type Kind uint8

const (
	Regular Kind = iota + 1
	Dir
	Symlink
)

// Digest is the SHA-256 of a file's content.
type Digest [sha256.Size]byte

// Limits on what a manifest may describe.
const (
	MaxPathLen   = 4096
	MaxEntries   = 2_000_000
	MaxFileSize  = 16 << 30
	maxBatch     = 4000    // entries per SyncManifest message
	blobChunk    = 1 << 20 // bytes per Blob message
	maxTargetLen = 4096
)

// Entry is one path of a workspace.
type Entry struct {
	Kind   Kind
	Exec   bool   // regular files: any executable bit set
	Size   int64  // regular files
	Digest Digest // regular files
	Target string // symlinks
}

// Manifest maps slash-separated paths relative to the workspace root to
// their entries.
type Manifest map[string]Entry

// Diff returns the paths of next that are new or differ from prev, and the
// paths of prev that are gone from next.
func Diff(prev, next Manifest) (upsert, del []string) {
	for p, e := range next {
		if old, ok := prev[p]; !ok || old != e {
			upsert = append(upsert, p)
		}
	}
	for p := range prev {
		if _, ok := next[p]; !ok {
			del = append(del, p)
		}
	}
	return upsert, del
}

// ValidatePath checks that p is a clean, relative, slash-separated path
// with no "." or ".." components: safe to join under a root.
func ValidatePath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("path longer than %d bytes", MaxPathLen)
	}
	if !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
		return fmt.Errorf("path %q: not valid UTF-8 or contains NUL", p)
	}
	if p[0] == '/' {
		return fmt.Errorf("path %q is absolute", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("path %q is not clean", p)
		}
	}
	return nil
}

// ToProto converts an entry at path p.
func (e Entry) ToProto(p string) *tunnelpb.FileEntry {
	fe := &tunnelpb.FileEntry{Path: p}
	switch e.Kind {
	case Regular:
		fe.Kind = tunnelpb.FileKind_FILE_KIND_REGULAR
		fe.Executable = e.Exec
		fe.Size = e.Size
		fe.Digest = bytes.Clone(e.Digest[:])
	case Dir:
		fe.Kind = tunnelpb.FileKind_FILE_KIND_DIRECTORY
	case Symlink:
		fe.Kind = tunnelpb.FileKind_FILE_KIND_SYMLINK
		fe.Target = e.Target
	}
	return fe
}

// EntryFromProto validates and converts a wire entry. The path is checked
// with ValidatePath only when relative is set.
func EntryFromProto(fe *tunnelpb.FileEntry, relative bool) (string, Entry, error) {
	p := fe.GetPath()
	if relative {
		if err := ValidatePath(p); err != nil {
			return "", Entry{}, err
		}
	}
	var e Entry
	switch fe.GetKind() {
	case tunnelpb.FileKind_FILE_KIND_REGULAR:
		e.Kind = Regular
		e.Exec = fe.GetExecutable()
		e.Size = fe.GetSize()
		if e.Size < 0 || e.Size > MaxFileSize {
			return "", Entry{}, fmt.Errorf("%s: size %d out of range", p, e.Size)
		}
		if len(fe.GetDigest()) != len(e.Digest) {
			return "", Entry{}, fmt.Errorf("%s: digest of %d bytes, want %d", p, len(fe.GetDigest()), len(e.Digest))
		}
		copy(e.Digest[:], fe.GetDigest())
	case tunnelpb.FileKind_FILE_KIND_DIRECTORY:
		e.Kind = Dir
	case tunnelpb.FileKind_FILE_KIND_SYMLINK:
		e.Kind = Symlink
		e.Target = fe.GetTarget()
		if e.Target == "" || len(e.Target) > maxTargetLen || strings.ContainsRune(e.Target, 0) {
			return "", Entry{}, fmt.Errorf("%s: bad symlink target", p)
		}
	default:
		return "", Entry{}, fmt.Errorf("%s: unknown kind %v", p, fe.GetKind())
	}
	return p, e, nil
}
