package actionresult

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// TestChecking drives the action cache's checks over the in-memory store:
// writes that do not parse are refused, and an entry is a hit only while
// every blob it references (through output trees too) is in the org's CAS.
func TestChecking(t *testing.T) {
	ctx := context.Background()
	m := blobstore.NewMemory()
	s := NewChecking(blobstore.NewVerifying(m), slog.New(slog.DiscardHandler))
	casRef := func(org string, b []byte) blobstore.Ref {
		return blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: blobstore.DigestOf(b)}
	}
	out := []byte("output file")
	file := []byte("file inside a tree")
	tree, _ := proto.Marshal(&repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: ToProto(blobstore.DigestOf(file))}}}})
	ar, _ := proto.Marshal(&repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "o", Digest: ToProto(blobstore.DigestOf(out))}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: ToProto(blobstore.DigestOf(tree))}},
	})
	key := blobstore.Ref{Org: "a", Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte("action"))}
	if err := blobstore.PutBytes(ctx, s, key, ar); err != nil {
		t.Fatal(err)
	}
	hit := func() error {
		b, err := blobstore.GetBytes(ctx, s, key, MaxSize)
		if err == nil && string(b) != string(ar) {
			t.Fatalf("hit served %d other bytes", len(b))
		}
		return err
	}
	if err := hit(); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("entry with no outputs stored: %v, want ErrNotFound", err)
	}
	for _, b := range [][]byte{out, tree} {
		if err := blobstore.PutBytes(ctx, s, casRef("a", b), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := hit(); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("entry whose tree's file is missing: %v, want ErrNotFound", err)
	}
	// Another org holding the file does not make org a's entry complete.
	if err := blobstore.PutBytes(ctx, s, casRef("b", file), file); err != nil {
		t.Fatal(err)
	}
	if err := hit(); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("entry completed by another org's blob: %v, want ErrNotFound", err)
	}
	if err := blobstore.PutBytes(ctx, s, casRef("a", file), file); err != nil {
		t.Fatal(err)
	}
	if err := hit(); err != nil {
		t.Fatalf("complete entry: %v", err)
	}
	// Losing an output turns the hit into a miss.
	m.Delete(casRef("a", out))
	if err := hit(); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("entry after an output was evicted: %v, want ErrNotFound", err)
	}

	// Writes: what does not parse, or is too large, is refused and not stored.
	n := m.Len()
	junk := blobstore.Ref{Org: "a", Kind: blobstore.KindAC, Digest: blobstore.DigestOf([]byte("junk"))}
	if err := blobstore.PutBytes(ctx, s, junk, []byte("\xff\xff not a proto")); !errors.Is(err, blobstore.ErrInvalid) {
		t.Errorf("junk action result: %v, want ErrInvalid", err)
	}
	badDigest, _ := proto.Marshal(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "x", Digest: &repb.Digest{Hash: "../x", SizeBytes: 1}}}})
	if err := blobstore.PutBytes(ctx, s, junk, badDigest); !errors.Is(err, blobstore.ErrInvalid) {
		t.Errorf("action result with a bad digest: %v, want ErrInvalid", err)
	}
	if _, err := s.NewWriter(ctx, junk, MaxSize+1); !errors.Is(err, blobstore.ErrTooLarge) {
		t.Errorf("oversized action result: %v, want ErrTooLarge", err)
	}
	if m.Len() != n {
		t.Errorf("refused writes stored something: %d blobs, want %d", m.Len(), n)
	}
	// A stored entry that does not parse (written before the checks, or
	// damaged) is a miss, not an error.
	if err := blobstore.PutBytes(ctx, m, junk, []byte("\xff\xff")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, junk, 0, 0); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("unparsable stored entry: %v, want ErrNotFound", err)
	}
}
