package actionresult

import (
	"errors"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// FuzzParse: an action result a client uploads either parses, with every
// digest it references valid (so Complete only ever looks up well-formed
// names), or is refused with ErrInvalid; a parsed result round-trips.
func FuzzParse(f *testing.F) {
	d := ToProto(blobstore.DigestOf([]byte("out")))
	for _, ar := range []*repb.ActionResult{
		{OutputFiles: []*repb.OutputFile{{Path: "a", Digest: d}}, StdoutDigest: d, ExitCode: 1},
		{OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: d}}},
		{OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: "../x", SizeBytes: -1}}}},
		{},
	} {
		b, _ := proto.Marshal(ar)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ar, err := Parse(b)
		if err != nil {
			if !errors.Is(err, blobstore.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		ds, err := Digests(ar)
		if err != nil {
			t.Fatalf("Digests of a parsed result: %v", err)
		}
		for _, d := range ds {
			if d.Size < 0 {
				t.Fatalf("parsed result references %s", d)
			}
			if _, err := blobstore.ParseHash(d.Hash.String()); err != nil {
				t.Fatal(err)
			}
		}
		b2, err := proto.Marshal(ar)
		if err != nil {
			t.Fatal(err)
		}
		ar2, err := Parse(b2)
		if err != nil || !proto.Equal(ar, ar2) {
			t.Fatalf("re-encoded result does not round-trip: %v", err)
		}
	})
}
