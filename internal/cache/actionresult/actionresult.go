// Package actionresult checks Bazel action results before the cache stores
// or serves them: an entry must parse, every digest in it must be valid, and
// a hit is served only when every blob it references (including the files
// inside its output trees) is still in the org's CAS. Checking makes these
// checks once, in front of the store every protocol uses.
package actionresult

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// MaxTreeSize bounds the Tree messages read while checking a result.
const MaxTreeSize = 64 << 20

// FromProto converts a REAPI digest, validating it.
func FromProto(d *repb.Digest) (blobstore.Digest, error) {
	if d == nil {
		return blobstore.Digest{}, fmt.Errorf("%w: missing digest", blobstore.ErrInvalid)
	}
	return blobstore.NewDigest(d.GetHash(), d.GetSizeBytes())
}

// ToProto converts a digest.
func ToProto(d blobstore.Digest) *repb.Digest {
	return &repb.Digest{Hash: d.Hash.String(), SizeBytes: d.Size}
}

// Parse decodes and validates an encoded ActionResult.
func Parse(b []byte) (*repb.ActionResult, error) {
	ar := &repb.ActionResult{}
	if err := proto.Unmarshal(b, ar); err != nil {
		return nil, fmt.Errorf("%w: action result: %v", blobstore.ErrInvalid, err)
	}
	if _, err := Digests(ar); err != nil {
		return nil, err
	}
	return ar, nil
}

// Digests returns the CAS blobs ar references directly (output files,
// output trees, stdout and stderr), validating each.
func Digests(ar *repb.ActionResult) ([]blobstore.Digest, error) {
	var ds []blobstore.Digest
	add := func(what string, d *repb.Digest, optional bool) error {
		if d == nil && optional {
			return nil
		}
		bd, err := FromProto(d)
		if err != nil {
			return fmt.Errorf("action result %s: %w", what, err)
		}
		ds = append(ds, bd)
		return nil
	}
	for _, f := range ar.GetOutputFiles() {
		if err := add("output file "+f.GetPath(), f.GetDigest(), false); err != nil {
			return nil, err
		}
	}
	for _, d := range ar.GetOutputDirectories() {
		if err := add("output directory "+d.GetPath(), d.GetTreeDigest(), false); err != nil {
			return nil, err
		}
	}
	if err := add("stdout", ar.GetStdoutDigest(), true); err != nil {
		return nil, err
	}
	if err := add("stderr", ar.GetStderrDigest(), true); err != nil {
		return nil, err
	}
	return ds, nil
}

// complete reports whether every blob ar references exists for org,
// including the files of its output trees, and refreshes them so that they
// outlive the entry's next use.
func complete(ctx context.Context, s blobstore.Store, org string, ar *repb.ActionResult) (bool, error) {
	ds, err := Digests(ar)
	if err != nil {
		return false, err
	}
	for _, d := range ar.GetOutputDirectories() {
		td, _ := FromProto(d.GetTreeDigest())
		b, err := blobstore.GetBytes(ctx, s, blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: td}, MaxTreeSize)
		if err != nil {
			return false, nil
		}
		tree := &repb.Tree{}
		if err := proto.Unmarshal(b, tree); err != nil {
			return false, nil
		}
		for _, dir := range append([]*repb.Directory{tree.GetRoot()}, tree.GetChildren()...) {
			for _, f := range dir.GetFiles() {
				fd, err := FromProto(f.GetDigest())
				if err != nil {
					return false, nil
				}
				ds = append(ds, fd)
			}
		}
	}
	missing, err := s.FindMissing(ctx, org, blobstore.KindCAS, ds)
	if err != nil {
		return false, err
	}
	return len(missing) == 0, nil
}
