package disk

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Quota bounds the bytes one org may hold. Zero means no bound.
type Quota = blobstore.Quota

// Options configures a Store.
type Options struct {
	// MaxBytes bounds the bytes on disk (deduplicated). Zero: no bound.
	MaxBytes int64
	// MaxBlobSize is the largest blob accepted. Default 16 GiB.
	MaxBlobSize int64
	// MinRetention is how long an entry is kept after its last use, whatever
	// the pressure, so that an action result is never served while the
	// blobs it references are evicted under the client.
	MinRetention time.Duration
	// DefaultQuota applies to orgs without an entry in OrgQuotas.
	DefaultQuota Quota
	// OrgQuotas are per-org quotas by org id.
	OrgQuotas map[string]Quota
	// NoSync skips the group commit: writes are acknowledged before they are
	// durable. Only for comparisons with caches that do not sync.
	NoSync bool
	// NoCompression stores every blob as it came. By default CAS blobs
	// that compress (see compressMin) are stored compressed with zstd.
	NoCompression bool
	// SnapshotInterval is how often the index snapshot is rewritten.
	// Default 10 minutes.
	SnapshotInterval time.Duration
	// Logger receives the store's logs. Default: discard.
	Logger *slog.Logger
	// Now returns the current time. Default time.Now; tests replace it.
	Now func() time.Time
}

func (o *Options) setDefaults() error {
	if o.MaxBlobSize == 0 {
		o.MaxBlobSize = 16 << 30
	}
	if o.SnapshotInterval == 0 {
		o.SnapshotInterval = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBytes < 0 || o.MaxBlobSize < 0 || o.MinRetention < 0 || o.SnapshotInterval < 0 {
		return fmt.Errorf("disk options: negative limit")
	}
	check := func(name string, q Quota) error {
		if q.Soft < 0 || q.Hard < 0 || (q.Hard > 0 && q.Soft > q.Hard) {
			return fmt.Errorf("disk options: quota %s: want 0 <= soft <= hard, got soft %d hard %d", name, q.Soft, q.Hard)
		}
		return nil
	}
	if err := check("default", o.DefaultQuota); err != nil {
		return err
	}
	for org, q := range o.OrgQuotas {
		if err := check(org, q); err != nil {
			return err
		}
	}
	return nil
}

// epoch is the origin of entry access times (seconds, uint32).
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func stamp(t time.Time) uint32 {
	d := t.Sub(epoch) / time.Second
	if d < 0 {
		return 0
	}
	if d > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(d)
}
