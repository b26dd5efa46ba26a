package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/httperror"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Authenticator turns a Nimbus credential (API token, job credential)
// into a principal; its errors wrap auth.ErrUnauthenticated.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
}

// Authorizer decides whether p may do action ("registry.read",
// "registry.write") in org; its errors wrap auth.ErrForbidden.
type Authorizer interface {
	Authorize(ctx context.Context, p auth.Principal, action string, org string) error
}

// Secrets keeps named secrets sealed at rest (internal/secrets.Store).
type Secrets interface {
	Get(ctx context.Context, name string) ([]byte, error)
	Put(ctx context.Context, name string, value []byte) error
}

// Auditor records events in the audit log (internal/audit.Log).
type Auditor interface {
	Record(ctx context.Context, e store.AuditEntry)
}

// Policy actions the registry asks for.
const (
	ActionRead  = "registry.read"
	ActionWrite = "registry.write"
)

// Options are the registry's dependencies.
type Options struct {
	Config Config
	// Store is the build cache's blob store (one store, one quota, one
	// eviction): blobs and manifests as KindCAS, tags as KindMeta, all
	// under the caller's org.
	Store blobstore.Store
	Authn Authenticator
	Authz Authorizer
	// OrgName returns an org's name (its own repositories are also
	// reachable under it, when it is a valid name component).
	OrgName func(ctx context.Context, id string) (string, error)
	// Secrets seals upstream credentials at rest; nil keeps the
	// configured ones in memory only.
	Secrets Secrets
	// Audit records pushes (registry.pushed); nil: none.
	Audit Auditor
	// TokenKey signs registry tokens (HMAC-SHA256, at least 32 bytes);
	// give every replica the same.
	TokenKey []byte
	// TokenTTL is the lifetime of registry tokens. Default 5 minutes.
	TokenTTL time.Duration
	// TempDir holds blobs being fetched or uploaded. Required.
	TempDir string
	// MaxBlobSize bounds an upload or a fetched blob. Default 16 GiB.
	MaxBlobSize int64
	// UpstreamIdleTimeout fails an upstream response that sends nothing
	// for this long. Default 30 seconds.
	UpstreamIdleTimeout time.Duration
	// UploadIdleTimeout abandons a push's upload session idle this long.
	// Default 15 minutes.
	UploadIdleTimeout time.Duration
	// Transport carries upstream requests. Default: a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	Logger    *slog.Logger
	// Registerer receives the registry's metrics; nil: none.
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Registry serves the OCI Distribution API under /v2/: pull-through for
// the configured upstreams and the orgs' own repositories, in the build
// cache's store.
type Registry struct {
	o         Options
	cfg       Config
	log       *slog.Logger
	store     blobstore.Store
	signer    *tokenSigner
	upstreams map[string]*upstream
	creds     *credentials
	routes    map[routeKey]route
	tags      *tagStore
	flights   *flights
	uploads   *uploads
	sigs      *signatures
	metrics   *metrics
	handler   http.Handler
	// manifestFetches joins concurrent fetches of one upstream manifest.
	manifestFetches singleflight.Group

	orgMu    sync.Mutex
	orgNames map[string]string

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New builds the registry. Close releases it.
func New(o Options) (*Registry, error) {
	if o.Store == nil || o.Authn == nil || o.Authz == nil || o.TempDir == "" {
		return nil, errors.New("registry: store, authenticator, authorizer and temp dir are required")
	}
	if len(o.TokenKey) < 32 {
		return nil, errors.New("registry: token key: at least 32 bytes")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = 5 * time.Minute
	}
	if o.MaxBlobSize == 0 {
		o.MaxBlobSize = 16 << 30
	}
	if o.UpstreamIdleTimeout == 0 {
		o.UpstreamIdleTimeout = 30 * time.Second
	}
	if o.UploadIdleTimeout == 0 {
		o.UploadIdleTimeout = 15 * time.Minute
	}
	if o.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		t.ResponseHeaderTimeout = time.Minute
		o.Transport = t
	}
	cfg := o.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TagTTL == 0 {
		cfg.TagTTL = 5 * time.Minute
	}
	// What a crash left of fetches and uploads is of no use.
	if err := os.RemoveAll(o.TempDir); err != nil {
		return nil, fmt.Errorf("registry temp dir: %w", err)
	}
	if err := os.MkdirAll(o.TempDir, 0o700); err != nil {
		return nil, fmt.Errorf("registry temp dir: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Registry{
		o: o, cfg: cfg, log: o.Logger.With("component", "registry"), store: o.Store,
		signer:    &tokenSigner{key: o.TokenKey, ttl: o.TokenTTL, now: o.Now},
		upstreams: map[string]*upstream{}, orgNames: map[string]string{}, metrics: m,
	}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		r.upstreams[u.Name] = newUpstream(u, o.Transport, o.Now, m, o.Logger)
	}
	r.creds = newCredentials(&r.cfg, o.Secrets, r.log)
	if err := r.creds.seal(context.Background()); err != nil {
		return nil, err
	}
	r.tags = newTagStore(o.Store, o.Now)
	r.flights = newFlights(r)
	r.uploads = newUploads(o.TempDir, o.MaxBlobSize, o.Now)
	r.sigs = newSignatures(o.Now)
	r.routes = r.routeTable()
	r.handler = r.wrap(r.serve)
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.sweepLoop(ctx)
	}()
	return r, nil
}

// Close stops background work, fails fetches in flight and removes
// uploads in progress. The caller stops serving first.
func (r *Registry) Close() error {
	r.stop()
	r.flights.closeAll()
	r.wg.Wait()
	r.uploads.closeAll()
	return nil
}

func (r *Registry) sweepLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := r.uploads.sweep(r.o.UploadIdleTimeout); n > 0 {
				r.log.Info("abandoned idle uploads", "count", n)
			}
		}
	}
}

// ServeHTTP serves the registry's paths (mount it at /v2/, before any
// path cleaning: the registry parses and validates paths itself, so
// every answer, to a path trick too, is a registry error).
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	r.handler.ServeHTTP(w, req)
}

func (r *Registry) orgName(ctx context.Context, org string) string {
	r.orgMu.Lock()
	n, ok := r.orgNames[org]
	r.orgMu.Unlock()
	if ok || r.o.OrgName == nil {
		return n
	}
	n, err := r.o.OrgName(ctx, org)
	if err != nil {
		r.log.Warn("look up org name", "org", org, "err", err)
		return ""
	}
	r.orgMu.Lock()
	r.orgNames[org] = n
	r.orgMu.Unlock()
	return n
}

// wrap turns a handler into an http.Handler answering errors in the OCI
// shape.
func (r *Registry) wrap(h httperror.Handler) http.Handler {
	return httperror.Wrap(r.log, httperror.OCI, classify, h)
}
