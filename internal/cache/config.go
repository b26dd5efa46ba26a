package cache

import (
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/disk"
)

// Quota bounds the bytes one org may hold (0: no bound). Above Soft, the
// org's least recently used entries are evicted; Hard is never exceeded.
type Quota = disk.Quota

// Config configures the cache. The zero value of every field but Dir is a
// usable default.
type Config struct {
	// Dir is the local storage directory. Required.
	Dir string
	// MaxBytes bounds the local storage (deduplicated bytes). 0: no bound.
	MaxBytes int64
	// MaxBlobSize is the largest blob accepted. Default 16 GiB.
	MaxBlobSize int64
	// MinRetention keeps every entry at least this long after its last use,
	// whatever the pressure (writes are refused instead). Default 1 hour.
	MinRetention time.Duration
	// DefaultQuota applies to every org without an entry in OrgQuotas.
	DefaultQuota Quota
	// OrgQuotas are per-org quotas by org id.
	OrgQuotas map[string]Quota
	// NoSync acknowledges writes before they are durable. For comparisons
	// only; never in production.
	NoSync bool
	// MaxBatchTotalSize bounds REAPI batch requests. Default ~4 MiB.
	MaxBatchTotalSize int64
	// UploadIdleTimeout abandons a resumable upload (ByteStream, Actions
	// cache) idle for this long. Default 15 minutes.
	UploadIdleTimeout time.Duration
	// S3 adds an object storage tier behind the local disk when set.
	S3 *S3Config
}

// S3Config configures the object storage tier.
type S3Config struct {
	// Endpoint is the S3 endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com.
	Endpoint string
	Region   string
	Bucket   string
	// Prefix is prepended to every object key.
	Prefix          string
	AccessKeyID     string
	SecretAccessKey string
	// PathStyle addresses the bucket in the path rather than the host name.
	PathStyle bool
}

func (c *Config) validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("cache config: dir: required"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("cache config: max_bytes: negative"))
	}
	if c.MaxBlobSize < 0 {
		errs = append(errs, fmt.Errorf("cache config: max_blob_size: negative"))
	}
	if c.MinRetention < 0 {
		errs = append(errs, fmt.Errorf("cache config: min_retention: negative"))
	}
	if c.S3 != nil {
		if c.S3.Endpoint == "" || c.S3.Bucket == "" {
			errs = append(errs, fmt.Errorf("cache config: s3: endpoint and bucket are required"))
		}
	}
	return errors.Join(errs...)
}
