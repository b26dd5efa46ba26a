package cache

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// backfillInterval is how often the disk is compared with the S3 tier.
const backfillInterval = time.Hour

// backfillLoop copies to the S3 tier what the disk holds and the bucket
// lacks: blobs whose write-behind copy was dropped (a full queue, an outage
// outlasting a shutdown) or written before the tier was configured. It runs
// once both indexes are complete, then every backfillInterval (jittered).
func (s *Service) backfillLoop(ctx context.Context) {
	for !s.disk.Ready() || !s.s3.Ready() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	for {
		n, err := s.backfillOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := backfillInterval/2 + rand.N(backfillInterval/2)
		if err != nil {
			s.log.Warn("backfill s3 tier", "err", err)
			wait = time.Minute/2 + rand.N(time.Minute)
		} else if n > 0 {
			s.log.Info("backfill s3 tier", "queued", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// backfillOnce walks the disk index a page at a time and queues copies of
// the entries the bucket is missing; it returns how many it queued.
func (s *Service) backfillOnce(ctx context.Context) (int, error) {
	type group struct {
		org  string
		kind blobstore.Kind
	}
	queued := 0
	var pos uint32
	for {
		refs, next := s.disk.Refs(pos, 1000)
		byGroup := map[group][]blobstore.Digest{}
		for _, r := range refs {
			g := group{r.Org, r.Kind}
			byGroup[g] = append(byGroup[g], r.Digest)
		}
		for g, ds := range byGroup {
			missing, err := s.s3.FindMissing(ctx, g.org, g.kind, ds)
			if err != nil {
				return queued, err
			}
			for _, d := range missing {
				if err := s.tier.Backfill(ctx, blobstore.Ref{Org: g.org, Kind: g.kind, Digest: d}); err != nil {
					return queued, err
				}
				queued++
			}
		}
		if next == 0 {
			return queued, nil
		}
		pos = next
	}
}
