package reapi

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

const h64 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestParseResources(t *testing.T) {
	d := blobstore.Digest{Hash: blobstore.EmptyDigest.Hash, Size: 12}
	tests := []struct {
		name  string
		write bool
		want  Resource
		ok    bool
	}{
		{"blobs/" + h64 + "/12", false, Resource{Digest: d}, true},
		{"main/x/blobs/" + h64 + "/12", false, Resource{Instance: "main/x", Digest: d}, true},
		{"uploads/u-1/blobs/" + h64 + "/12", true, Resource{UUID: "u-1", Digest: d}, true},
		{"inst/uploads/u-1/blobs/" + h64 + "/12/some/file", true, Resource{Instance: "inst", UUID: "u-1", Digest: d}, true},
		{"blobs/" + strings.ToUpper(h64) + "/12", false, Resource{}, false},
		{"blobs/" + h64 + "/-1", false, Resource{}, false},
		{"blobs/" + h64 + "/012", false, Resource{}, false},
		{"blobs/" + h64 + "/99999999999999999999", false, Resource{}, false},
		{"blobs/" + h64, false, Resource{}, false},
		{"blobs/../../etc/passwd/1", false, Resource{}, false},
		{"compressed-blobs/zstd/" + h64 + "/12", false, Resource{Digest: d, Compressed: true}, true},
		{"i/compressed-blobs/zstd/" + h64 + "/12", false, Resource{Instance: "i", Digest: d, Compressed: true}, true},
		{"compressed-blobs/deflate/" + h64 + "/12", false, Resource{}, false},
		{"inst/uploads/u-2/compressed-blobs/zstd/" + h64 + "/12/x", true, Resource{Instance: "inst", UUID: "u-2", Digest: d, Compressed: true}, true},
		{"uploads/u-2/compressed-blobs/brotli/" + h64 + "/12", true, Resource{}, false},
		{"blobs/" + h64 + "/12/extra", false, Resource{}, false},
		{"uploads//blobs/" + h64 + "/12", true, Resource{}, false},
		{"blobs/" + h64 + "/12", true, Resource{}, false},
	}
	for _, tc := range tests {
		parse := ParseReadResource
		if tc.write {
			parse = ParseWriteResource
		}
		got, err := parse(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("parse(%q) err = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if err != nil && !errors.Is(err, blobstore.ErrInvalid) {
			t.Errorf("parse(%q) err = %v, not ErrInvalid", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("parse(%q) (-want +got):\n%s", tc.name, diff)
		}
	}
}

func FuzzParseResource(f *testing.F) {
	f.Add("blobs/" + h64 + "/12")
	f.Add("a/b/uploads/x/blobs/" + h64 + "/0/extra")
	f.Add("compressed-blobs/zstd/" + h64 + "/3")
	f.Fuzz(func(t *testing.T, name string) {
		for _, parse := range []func(string) (Resource, error){ParseReadResource, ParseWriteResource} {
			r, err := parse(name)
			if err != nil {
				if !errors.Is(err, blobstore.ErrInvalid) {
					t.Fatalf("error %v is not ErrInvalid", err)
				}
				continue
			}
			// What parses names a well-formed digest found in the name.
			if r.Digest.Size < 0 || !strings.Contains(name, r.Digest.Hash.String()) {
				t.Fatalf("parse(%q) = %+v", name, r)
			}
		}
	})
}
