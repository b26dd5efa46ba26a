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
	// NoCompression stores every blob as it came. By default (false) CAS
	// blobs of 1 KiB or more that compress by at least an eighth are
	// stored compressed with zstd: a client reading compressed-blobs/zstd
	// gets the stored bytes, and one sending zstd has its bytes stored as
	// they came. Blobs already stored either way stay readable.
	NoCompression bool
	// MaxBatchTotalSize bounds REAPI batch requests. Default ~4 MiB.
	MaxBatchTotalSize int64
	// UploadIdleTimeout abandons a resumable upload (ByteStream, Actions
	// cache) idle for this long. Default 15 minutes.
	UploadIdleTimeout time.Duration
	// S3 adds an object storage tier behind the local disk when set.
	S3 *S3Config
	// ActionsSigningKey signs the Actions cache's upload and download URLs
	// (HMAC-SHA256; at least 32 bytes). Give every replica the same secret
	// so that URLs survive restarts and work on any replica. Unset: a
	// random key per process.
	ActionsSigningKey []byte
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
	// BreakerFailures is how many consecutive failed requests open the
	// circuit breaker in front of the bucket. Default 5.
	BreakerFailures int
	// BreakerOpenFor is how long the breaker stays open before a probe
	// request (doubling after each failed probe, up to a minute).
	// Default 5 seconds.
	BreakerOpenFor time.Duration
	// PartSize: larger blobs are uploaded in parts of this size (at least
	// 5 MiB). Default 64 MiB.
	PartSize int64
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
	if n := len(c.ActionsSigningKey); n > 0 && n < 32 {
		errs = append(errs, fmt.Errorf("cache config: actions_signing_key: %d bytes, want at least 32", n))
	}
	if c.S3 != nil {
		if c.S3.Endpoint == "" || c.S3.Bucket == "" {
			errs = append(errs, fmt.Errorf("cache config: s3: endpoint and bucket are required"))
		}
		if (c.S3.AccessKeyID == "") != (c.S3.SecretAccessKey == "") {
			errs = append(errs, fmt.Errorf("cache config: s3: access_key_id and secret_access_key go together"))
		}
		if c.S3.BreakerFailures < 0 || c.S3.BreakerOpenFor < 0 {
			errs = append(errs, fmt.Errorf("cache config: s3: breaker settings: negative"))
		}
		if c.S3.PartSize != 0 && c.S3.PartSize < 5<<20 {
			errs = append(errs, fmt.Errorf("cache config: s3: part_size: at least 5 MiB"))
		}
	}
	return errors.Join(errs...)
}
