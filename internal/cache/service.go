package cache

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/actionresult"
	"github.com/nimbus-build/nimbus/internal/cache/actionscache"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/breaker"
	"github.com/nimbus-build/nimbus/internal/cache/disk"
	"github.com/nimbus-build/nimbus/internal/cache/httpcache"
	"github.com/nimbus-build/nimbus/internal/cache/reapi"
	"github.com/nimbus-build/nimbus/internal/cache/s3"
)

// Authenticator turns a bearer token into a principal; its errors wrap
// auth.ErrUnauthenticated.
type Authenticator = access.Authenticator

// Authorizer decides whether a principal may do "cache.read" or
// "cache.write" in an org; its errors wrap auth.ErrForbidden.
type Authorizer = access.Authorizer

// HTTP path prefixes served by Service.Handler.
const (
	// BazelHTTPPrefix is the Bazel HTTP cache: --remote_cache=<base>/cache.
	BazelHTTPPrefix = "/cache/"
)

// Service is the build cache.
type Service struct {
	cfg   Config
	log   *slog.Logger
	disk  *disk.Store
	s3    *s3.Store         // nil without an S3 tier
	tier  *blobstore.Tiered // nil without an S3 tier
	store blobstore.Store
	gate  *access.Gate
	reapi *reapi.Server
	http  *httpcache.Handler
	gha   *actionscache.Handler
	mux   *http.ServeMux

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New opens the storage and builds the protocol front ends. It returns at
// once; the index is reconciled in the background until Close.
func New(cfg Config, authn Authenticator, authz Authorizer, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.MinRetention == 0 {
		cfg.MinRetention = time.Hour
	}
	if cfg.UploadIdleTimeout == 0 {
		cfg.UploadIdleTimeout = 15 * time.Minute
	}
	log = log.With("component", "cache")
	d, err := disk.Open(cfg.Dir, disk.Options{
		MaxBytes:      cfg.MaxBytes,
		MaxBlobSize:   cfg.MaxBlobSize,
		MinRetention:  cfg.MinRetention,
		DefaultQuota:  cfg.DefaultQuota,
		OrgQuotas:     cfg.OrgQuotas,
		NoSync:        cfg.NoSync,
		NoCompression: cfg.NoCompression,
		Logger:        log,
	})
	if err != nil {
		return nil, err
	}
	metrics, err := blobstore.NewMetrics(reg)
	if err != nil {
		d.Close()
		return nil, err
	}
	if err := registerDiskMetrics(reg, d); err != nil {
		d.Close()
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, disk: d, gate: access.NewGate(authn, authz)}
	// The store every protocol uses is composed here, and its checks made
	// here once: each backend behind blobstore.Verifying (refs, sizes,
	// ranges, CAS content), the S3 tier (when configured) behind the disk
	// in a Tiered store, and the action cache's checks (parse on write,
	// completeness on read) in front of everything:
	//
	//	Checking(Verifying(disk))
	//	Checking(Tiered(Verifying(disk), Verifying(s3)))
	s.store = blobstore.NewVerifying(metrics.Wrap("disk", d))
	if cfg.S3 != nil {
		if err := s.openS3(reg, metrics); err != nil {
			d.Close()
			return nil, err
		}
	}
	s.store = actionresult.NewChecking(s.store, log)
	store := s.store
	s.reapi = reapi.New(store, log, reapi.Options{MaxBatchTotalSize: cfg.MaxBatchTotalSize})
	s.http = httpcache.New(store, log)
	s.gha, err = actionscache.New(store, log, filepath.Join(cfg.Dir, "actions"), actionscache.Options{SigningKey: cfg.ActionsSigningKey})
	if err != nil {
		s.closeStores()
		return nil, err
	}
	s.mux = s.gate.Mux(s.httpRoutes(), log)

	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sweepLoop(ctx)
	}()
	if s.tier != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.backfillLoop(ctx)
		}()
	}
	return s, nil
}

// openS3 puts the S3 tier behind the disk: a client whose requests pass
// through a circuit breaker, the S3 store, and the Tiered store in front.
func (s *Service) openS3(reg prometheus.Registerer, metrics *blobstore.Metrics) error {
	c := s.cfg.S3
	br := breaker.New(breaker.Options{Failures: c.BreakerFailures, OpenFor: c.BreakerOpenFor, Name: "s3", Logger: s.log})
	client, err := s3.NewClient(s3.Config{
		Endpoint: c.Endpoint, Region: c.Region, Bucket: c.Bucket, PathStyle: c.PathStyle,
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey,
	}, &breaker.Transport{Breaker: br, Next: s3.NewTransport()}, nil)
	if err != nil {
		return fmt.Errorf("cache config: s3: %w", err)
	}
	st, err := s3.Open(client, s3.Options{
		Prefix:       c.Prefix,
		DefaultQuota: s.cfg.DefaultQuota,
		OrgQuotas:    s.cfg.OrgQuotas,
		MinRetention: s.cfg.MinRetention,
		PartSize:     c.PartSize,
		Unavailable: func() error {
			if st := br.State(); st != breaker.Closed {
				return fmt.Errorf("s3: circuit breaker %s: %w", st, blobstore.ErrUnavailable)
			}
			return nil
		},
		Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("cache config: s3: %w", err)
	}
	if err := registerS3Metrics(reg, br, st); err != nil {
		st.Close()
		return err
	}
	s.s3 = st
	s.tier = blobstore.NewTiered(s.store, blobstore.NewVerifying(metrics.Wrap("s3", st)), s.log, blobstore.TieredOptions{})
	s.store = s.tier
	return nil
}

func registerS3Metrics(reg prometheus.Registerer, br *breaker.Breaker, st *s3.Store) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nimbus_cache_s3_breaker_state", Help: "Circuit breaker in front of S3: 0 closed, 1 open, 2 half-open."},
			func() float64 { return float64(br.State()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "nimbus_cache_s3_breaker_opens_total", Help: "Times the S3 circuit breaker opened."},
			func() float64 { return float64(br.Opened()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nimbus_cache_s3_objects", Help: "Objects the cache knows the S3 tier holds."},
			func() float64 { n, _ := st.Stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "nimbus_cache_s3_bytes", Help: "Bytes the cache knows the S3 tier holds."},
			func() float64 { _, b := st.Stats(); return float64(b) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// closeStores stops the tiers: the write-behind copies first (for up to
// 30 seconds), then the S3 store, then the disk.
func (s *Service) closeStores() error {
	if s.tier != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.tier.Close(ctx)
		cancel()
		s.s3.Close()
	}
	return s.disk.Close()
}

func registerDiskMetrics(reg prometheus.Registerer, d *disk.Store) error {
	gauges := []struct {
		name, help string
		f          func(disk.Stats) float64
	}{
		{"nimbus_cache_disk_bytes", "Bytes held on the local disk, deduplicated.", func(s disk.Stats) float64 { return float64(s.Bytes) }},
		{"nimbus_cache_disk_entries", "Entries in the local disk index.", func(s disk.Stats) float64 { return float64(s.Entries) }},
	}
	for _, g := range gauges {
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, func() float64 { return g.f(d.Stats()) })); err != nil {
			return err
		}
	}
	counters := []struct {
		name, help string
		f          func(disk.Stats) float64
	}{
		{"nimbus_cache_disk_evictions_total", "Entries evicted from the local disk.", func(s disk.Stats) float64 { return float64(s.Evictions) }},
		{"nimbus_cache_disk_refusals_total", "Writes refused for a quota or the size limit.", func(s disk.Stats) float64 { return float64(s.Refusals) }},
	}
	for _, c := range counters {
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, func() float64 { return c.f(d.Stats()) })); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) sweepLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := s.reapi.SweepUploads(s.cfg.UploadIdleTimeout) + s.gha.Sweep(s.cfg.UploadIdleTimeout); n > 0 {
				s.log.Info("abandoned idle uploads", "count", n)
			}
		}
	}
}

// NewGRPCServer returns a gRPC server serving the REAPI cache services
// (Capabilities, ContentAddressableStorage, ActionCache, ByteStream) and
// the health service, behind the edge's interceptors (every method is
// authorized for the action the route table gives it), with the options
// the cache needs (see grpcServerOptions) and opts.
func (s *Service) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(append(grpcServerOptions(), s.gate.ServerOptions(grpcMethods(), s.reapi.Status)...), opts...)
	g := grpc.NewServer(opts...)
	s.reapi.Register(g)
	healthpb.RegisterHealthServer(g, health.NewServer())
	return g
}

// Handler serves the HTTP routes of the route table (routes.go): the
// Bazel HTTP cache under /cache/, the Actions cache v1 API and signed blob
// URLs under /actions-cache/ and its v2 Twirp API under
// /twirp/github.actions.results.api.v1.CacheService/ (the client builds
// that path from the host root). Mount it at the root.
func (s *Service) Handler() http.Handler { return s.mux }

// Store returns the blob store behind every protocol (for the benchmark and
// for other Nimbus components that keep blobs per org).
func (s *Service) Store() blobstore.Store { return s.store }

// Close stops the background work, waits for it and saves the index. The
// caller stops serving first.
func (s *Service) Close() error {
	s.stop()
	s.wg.Wait()
	s.reapi.Close()
	err := s.gha.Close()
	if derr := s.closeStores(); err == nil {
		err = derr
	}
	return err
}

// Entries returns the number of entries in the local store's index.
func (s *Service) Entries() int { return s.disk.Len() }

// OrgUsage is the bytes org holds in the cache's local tier and the
// quota that bounds it (the dashboard shows one against the other).
func (s *Service) OrgUsage(org string) (used int64, quota Quota) {
	quota = s.cfg.DefaultQuota
	if q, ok := s.cfg.OrgQuotas[org]; ok {
		quota = q
	}
	return s.disk.OrgBytes(org), quota
}
