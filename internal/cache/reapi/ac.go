package reapi

import (
	"context"
	"errors"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/actionresult"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// maxActionResult bounds a stored action result.
const maxActionResult = 16 << 20

// GetActionResult implements repb.ActionCacheServer. An entry is a hit only
// when every blob it references exists in the org's CAS.
func (s *Server) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	c, err := access.CallerFrom(ctx)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	d, err := actionresult.FromProto(req.GetActionDigest())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	b, err := blobstore.GetBytes(ctx, s.store, blobstore.Ref{Org: c.Org(), Kind: blobstore.KindAC, Digest: d}, maxActionResult)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	ar, err := actionresult.Parse(b)
	if err != nil {
		s.log.WarnContext(ctx, "stored action result does not parse; treated as a miss", "org", c.Org(), "err", err)
		return nil, s.status(ctx, fmt.Errorf("action %s: %w", d, blobstore.ErrNotFound))
	}
	ok, err := actionresult.Complete(ctx, s.store, c.Org(), ar)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	if !ok {
		return nil, s.status(ctx, fmt.Errorf("action %s: some outputs are gone: %w", d, blobstore.ErrNotFound))
	}
	return ar, nil
}

// UpdateActionResult implements repb.ActionCacheServer.
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
	if _, err := actionresult.Digests(ar); err != nil {
		return nil, s.status(ctx, err)
	}
	b, err := proto.Marshal(ar)
	if err != nil {
		return nil, s.status(ctx, fmt.Errorf("%w: %v", blobstore.ErrInvalid, err))
	}
	if len(b) > maxActionResult {
		return nil, s.status(ctx, fmt.Errorf("%w: action result of %d bytes", blobstore.ErrTooLarge, len(b)))
	}
	err = blobstore.PutBytes(ctx, s.store, blobstore.Ref{Org: c.Org(), Kind: blobstore.KindAC, Digest: d}, b)
	if errors.Is(err, blobstore.ErrInvalid) {
		return nil, s.status(ctx, err)
	}
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return ar, nil
}
