package reapi

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/actionresult"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// GetActionResult implements repb.ActionCacheServer. The store in front of
// every protocol (actionresult.Checking) serves an entry only when every
// blob it references exists in the org's CAS.
func (s *Server) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	d, err := actionresult.FromProto(req.GetActionDigest())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	b, err := blobstore.GetBytes(ctx, s.store, blobstore.Ref{Org: c.Org(), Kind: blobstore.KindAC, Digest: d}, actionresult.MaxSize)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	ar := &repb.ActionResult{}
	if err := proto.Unmarshal(b, ar); err != nil {
		return nil, s.status(ctx, fmt.Errorf("action %s: %v: %w", d, err, blobstore.ErrNotFound))
	}
	return ar, nil
}

// UpdateActionResult implements repb.ActionCacheServer. The store checks
// that the result parses and fits.
func (s *Server) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	d, err := actionresult.FromProto(req.GetActionDigest())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	ar := req.GetActionResult()
	if ar == nil {
		return nil, s.status(ctx, fmt.Errorf("%w: missing action result", blobstore.ErrInvalid))
	}
	b, err := proto.Marshal(ar)
	if err != nil {
		return nil, s.status(ctx, fmt.Errorf("%w: %v", blobstore.ErrInvalid, err))
	}
	if err := blobstore.PutBytes(ctx, s.store, blobstore.Ref{Org: c.Org(), Kind: blobstore.KindAC, Digest: d}, b); err != nil {
		return nil, s.status(ctx, err)
	}
	return ar, nil
}
