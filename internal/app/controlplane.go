package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/api"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/actionscache"
	"github.com/nimbus-build/nimbus/internal/cache/jobcred"
	"github.com/nimbus-build/nimbus/internal/dashboard"
	"github.com/nimbus-build/nimbus/internal/egress"
	"github.com/nimbus-build/nimbus/internal/fleet"
	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/logs/clickhouse"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/registry"
	"github.com/nimbus-build/nimbus/internal/secrets"
	"github.com/nimbus-build/nimbus/internal/sessions"
	"github.com/nimbus-build/nimbus/internal/sso"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/websession"
)

// ControlPlane is the server side of Nimbus, built and ready to serve.
type ControlPlane struct {
	Config   ServerConfig
	Store    *sqlstore.DB
	Keyring  *auth.Keyring
	Jobs     *jobs.Service
	Logs     *logs.Service
	API      *api.Server
	Registry *prometheus.Registry
	Cache    *cache.Service
	// ContainerRegistry is the registry cache (/v2/), in the cache's store.
	ContainerRegistry *registry.Registry
	Sessions          *sessions.Broker
	CA                *pki.CA
	// Dashboard is the web dashboard; Web its sign-in sessions.
	Dashboard *dashboard.Server
	Web       *websession.Manager
	// Bootstrap is set when this start created the installation.
	Bootstrap *Bootstrap
	log       *slog.Logger
	minter    jobs.RunnerMinter
	grpcLn    net.Listener
	grpcAddr  string
	metricsLn net.Listener
	logCH     *clickhouse.Store // nil: logs in the database
	// jobsWake and sessionsWake wake long polls, across replicas on
	// PostgreSQL.
	jobsWake, sessionsWake *notify.Notifier
	ghApp                  *github.App // nil without a GitHub App
	jobCreds               *jobcred.Minter
}

// Option adjusts how a control plane is built.
type Option func(*ControlPlane)

// WithRunnerMinter replaces the GitHub App as the source of runner
// configs (benchmarks measure Nimbus without GitHub's latency).
func WithRunnerMinter(m jobs.RunnerMinter) Option {
	return func(cp *ControlPlane) { cp.minter = m }
}

// OpenControlPlane opens the database (creating and migrating it), loads
// the master key (creating one on first start with the embedded
// database), the signing keys and the policy, and builds the services.
func OpenControlPlane(ctx context.Context, c ServerConfig, log *slog.Logger, opts ...Option) (*ControlPlane, error) {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	keys, err := loadOrCreateMasterKeys(c.MasterKeyFile)
	if err != nil {
		return nil, err
	}
	sealer, err := auth.NewSealer(keys)
	if err != nil {
		return nil, err
	}
	st, err := sqlstore.OpenWith(ctx, c.Database, sqlstore.Options{MaxConns: c.DatabaseConns, Logger: log})
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Config: c, Store: st, log: log, jobsWake: notify.New(), sessionsWake: notify.New()}
	for _, o := range opts {
		o(cp)
	}
	if err := cp.build(ctx, sealer); err != nil {
		if cp.ContainerRegistry != nil {
			cp.ContainerRegistry.Close()
		}
		if cp.Cache != nil {
			cp.Cache.Close()
		}
		st.Close()
		return nil, err
	}
	return cp, nil
}

func loadOrCreateMasterKeys(path string) ([]auth.MasterKey, error) {
	keys, err := auth.LoadMasterKeys(path)
	if err == nil {
		return keys, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	keys = []auth.MasterKey{auth.NewMasterKey()}
	if err := auth.WriteMasterKeys(path, keys); err != nil {
		return nil, err
	}
	return keys, nil
}

func (cp *ControlPlane) build(ctx context.Context, sealer *auth.Sealer) error {
	c := cp.Config
	ring, err := auth.OpenKeyring(ctx, cp.Store.Keys(), sealer, nil)
	if err != nil {
		return fmt.Errorf("signing keys: %w (is --master-key-file the one this database was created with?)", err)
	}
	cp.Keyring = ring
	pol, err := policy.New(ctx)
	if err != nil {
		return err
	}
	sec := secrets.New(cp.Store, sealer)
	minter := cp.minter
	if minter == nil {
		if minter, err = cp.githubApp(ctx, sec); err != nil {
			return err
		}
	}
	cp.Registry = prometheus.NewRegistry()
	cp.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := jobs.New(jobs.Options{Store: cp.Store, Config: c.jobsConfig(), Logger: cp.log, Registry: cp.Registry, Runners: minter,
		Notifier: cp.jobsWake})
	if err != nil {
		return err
	}
	cp.Jobs = svc
	var logStore logs.Store = cp.Store.Logs()
	if c.LogStore != "" {
		ch, err := clickhouse.Open(ctx, c.LogStore, clickhouse.Options{Retention: c.LogRetention})
		if err != nil {
			return fmt.Errorf("log-store: %w", err)
		}
		cp.logCH, logStore = ch, ch
	}
	batch := c.LogBatch
	if batch.Lines == 0 && cp.logCH != nil {
		batch.Lines = logs.ClickHouseBatchLines
	}
	if batch.Bytes == 0 && cp.logCH != nil {
		batch.Bytes = logs.ClickHouseBatchBytes
	}
	cp.Logs, err = logs.New(logs.Options{Store: logStore, Jobs: svc, Config: logs.Config{MaxBytes: c.MaxLogBytes, Batch: batch},
		Registry: cp.Registry,
		Notifier: cp.jobsWake, Logger: cp.log})
	if err != nil {
		return err
	}
	authn := auth.NewAuthenticator(cp.Store, ring, nil)
	authn.WatchJobs(cp.jobsWake.Wait, jobs.Topic)
	cp.jobCreds = &jobcred.Minter{Store: cp.Store, Keyring: ring, Policy: pol, DefaultTimeout: c.DefaultTimeout, Log: cp.log}
	if cp.ghApp != nil {
		cp.jobCreds.Sources = &jobcred.GitHub{App: cp.ghApp}
	}
	urlKey, err := sec.GetOrCreate(ctx, secrets.CacheURLKey, 32)
	if err != nil {
		return err
	}
	cc := cache.Config{
		Dir: c.CacheDir, MaxBytes: c.CacheMaxBytes, DefaultQuota: cache.Quota{Soft: c.CacheQuotaSoft, Hard: c.CacheQuotaHard},
		ActionsSigningKey: urlKey, NoCompression: !c.CacheCompress,
	}
	if c.CacheS3.Endpoint != "" {
		s3 := c.CacheS3
		cc.S3 = &s3
	}
	cp.Cache, err = cache.New(cc, authn, policy.OrgAuthorizer{Engine: pol}, cp.log, cp.Registry)
	if err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	if err := cp.openRegistry(ctx, authn, pol, sec); err != nil {
		return err
	}
	ca, err := loadCA(ctx, sec)
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	cp.CA = ca
	// The CA's certificate is public: clients trust it for --tls-auto.
	if err := os.WriteFile(filepath.Join(c.DataDir, "ca.crt"), ca.CertPEM(), 0o644); err != nil {
		return err
	}
	cp.Sessions = sessions.New(sessions.Options{Store: cp.Store, CA: ca, Policy: pol, IdleTTL: c.SessionIdleTTL, AgentCertTTL: c.RBSAgentCertTTL,
		Notifier: cp.sessionsWake, Logger: cp.log})
	flt := fleet.New(fleet.Options{Store: cp.Store, Keyring: ring, Policy: pol, Logger: cp.log})
	adm := admin.New(admin.Options{Store: cp.Store, Policy: pol, Keyring: ring, Secrets: sec, Logger: cp.log})
	egr := egress.New(cp.Store.Egress(), cp.Store, c.egressRules, cp.log)
	mounts := map[string]http.Handler{
		cache.BazelHTTPPrefix: cp.Cache.Handler(), actionscache.Prefix: cp.Cache.Handler(), actionscache.TwirpPrefix: cp.Cache.Handler(),
	}
	if err := cp.buildDashboard(ctx, sec, pol, ring, flt, adm, egr); err != nil {
		return err
	}
	for _, p := range dashboard.MountPatterns {
		mounts[p] = cp.Dashboard
	}
	cp.API = api.New(api.Options{
		Store: cp.Store, Jobs: svc, Logs: cp.Logs, Auth: authn,
		Fleet:   flt,
		Admin:   adm,
		Keyring: ring, Policy: pol, Sessions: cp.Sessions, CA: ca,
		RBSRequireClientCert: c.RBSRequireClientCert,
		Secrets:              sec, Gatherer: cp.Registry, Registry: cp.Registry, Logger: cp.log, JobAccess: cp.jobAccess,
		Metrics: c.metricsAccess(), Limits: c.Limits,
		Egress:     egr,
		CacheTrust: jobcred.NewSettings(cp.Store, cp.log),
		Mounts:     mounts,
	})
	cp.Bootstrap, err = bootstrap(ctx, cp.Store, sec, c.DataDir)
	return err
}

// openRegistry builds the registry cache on the build cache's store (one
// store, one quota, one eviction), with the same authentication and
// policy as everything else.
func (cp *ControlPlane) openRegistry(ctx context.Context, authn *auth.Authenticator, pol *policy.Engine, sec *secrets.Store) error {
	key, err := sec.GetOrCreate(ctx, secrets.RegistryTokenKey, 32)
	if err != nil {
		return err
	}
	orgs := cp.Store.Orgs()
	cp.ContainerRegistry, err = registry.New(registry.Options{
		Config: cp.Config.registryConfig, Store: cp.Cache.Store(), Authn: authn, Authz: policy.OrgAuthorizer{Engine: pol},
		OrgName: func(ctx context.Context, id string) (string, error) {
			o, err := orgs.Get(ctx, id)
			return o.Name, err
		},
		Secrets: sec, Audit: audit.New(cp.Store, nil, cp.log), TokenKey: key, TempDir: filepath.Join(filepath.Dir(cp.Config.CacheDir), "registry-spool"),
		Logger: cp.log, Registerer: cp.Registry,
	})
	if err != nil {
		return fmt.Errorf("build registry: %w", err)
	}
	return nil
}

// handler is what the HTTP listener serves: the registry's /v2/ as it
// arrives (the registry validates paths itself, so a path trick gets a
// registry error, not the mux's redirect) with its bodies under the edge's
// minimum rate, everything else through the API.
func (cp *ControlPlane) handler() http.Handler {
	reg := cp.API.GuardBodies(cp.ContainerRegistry)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, registry.PathPrefix) {
			reg.ServeHTTP(w, r)
			return
		}
		cp.API.ServeHTTP(w, r)
	})
}

// buildDashboard builds the web dashboard and its sessions: sign-in as
// --dashboard-config says (no providers: the sign-in page says how to
// add one), over the same services and policy as the API.
func (cp *ControlPlane) buildDashboard(ctx context.Context, sec *secrets.Store, pol *policy.Engine, ring *auth.Keyring,
	flt *fleet.Service, adm *admin.Service, egr *egress.Service) error {
	c := cp.Config
	key, err := sec.GetOrCreate(ctx, secrets.DashboardKey, 32)
	if err != nil {
		return err
	}
	sc := websession.DefaultConfig()
	d := c.dashboard
	if d.Session.Idle > 0 {
		sc.Idle = d.Session.Idle
	}
	if d.Session.Lifetime > 0 {
		sc.Absolute = d.Session.Lifetime
	}
	if d.Session.StepUp > 0 {
		sc.StepUp = d.Session.StepUp
	}
	sc.Secure = c.TLS() || strings.HasPrefix(c.PublicURL, "https://")
	if cp.Web, err = websession.New(cp.Store.WebSessions(), sc, key, nil); err != nil {
		return fmt.Errorf("dashboard-config: session: %w", err)
	}
	cp.Dashboard, err = dashboard.New(dashboard.Options{
		Store: cp.Store, Jobs: cp.Jobs, Logs: cp.Logs, Fleet: flt, Admin: adm, Keyring: ring, Policy: pol,
		Sessions: cp.Sessions, Egress: egr, Cache: cp.Cache, Web: cp.Web,
		Providers: sso.Providers(d, c.GitHubAPIURL, c.GitHubClientID, nil), Rules: d.Rules,
		PublicURL: c.PublicURL, Wait: cp.jobsWake.Wait, Logger: cp.log,
	})
	return err
}

// githubApp loads the GitHub App: a key file given now is sealed into the
// database, so later starts (and other replicas) need no file.
func (cp *ControlPlane) githubApp(ctx context.Context, sec *secrets.Store) (jobs.RunnerMinter, error) {
	c := cp.Config
	if c.GitHubAppKeyFile != "" {
		pem, err := os.ReadFile(c.GitHubAppKeyFile)
		if err != nil {
			return nil, fmt.Errorf("github-app-key-file: %w", err)
		}
		if err := sec.Put(ctx, secrets.GitHubAppKey, pem); err != nil {
			return nil, err
		}
	}
	if c.GitHubAppID == 0 && c.GitHubClientID == "" {
		return nil, nil
	}
	pem, err := sec.Get(ctx, secrets.GitHubAppKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errors.New("github-app-id is set but no private key is stored: pass --github-app-key-file once")
	}
	if err != nil {
		return nil, err
	}
	app, err := github.NewApp(github.AppConfig{AppID: c.GitHubAppID, ClientID: c.GitHubClientID, PrivateKeyPEM: pem,
		BaseURL: c.GitHubAPIURL, Logger: cp.log})
	if err != nil {
		return nil, fmt.Errorf("github app: %w", err)
	}
	cp.ghApp = app
	return jobs.GitHubRunnerMinter{App: app, RunnerGroupID: c.GitHubRunnerGroupID}, nil
}

// jobAccess is what a leased job is given to use the build cache without
// setup: the endpoints and its cache credential (internal/cache/jobcred
// decides what it grants and mints it). An agent with sandbox networks
// forwards the endpoints into the sandbox and points the environment there.
func (cp *ControlPlane) jobAccess(ctx context.Context, j store.Job) (api.JobAccess, error) {
	cred, ok, err := cp.jobCreds.Mint(ctx, j)
	if err != nil || !ok {
		return api.JobAccess{}, err
	}
	grpcURL := ""
	if cp.grpcAddr != "" {
		grpcURL = "grpc://" + cp.grpcAddr
	}
	return api.JobAccess{
		Env:   cache.JobEnv(cp.Config.PublicURL, grpcURL, cred.Token, cred.Grant.WriteAC),
		Cache: &apiv1.CacheAccess{Token: cred.Token, GRPC: cp.grpcAddr, NoUploadResults: !cred.Grant.WriteAC},
	}, nil
}

// Serve serves the API on ln (and the cache's gRPC API on its own
// listener) and runs the background loops until ctx ends, then shuts down
// gracefully.
func (cp *ControlPlane) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           cp.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Long polls and log streams end when the server stops.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	ln = cp.API.LimitListener(ln, !cp.Config.TLS())
	if cp.Config.TLS() {
		tc, err := cp.tlsConfig()
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, tc)
	}
	if err := cp.ListenMetrics(); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if cp.metricsLn != nil {
		msrv := &http.Server{Handler: cp.API.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 16 << 10}
		g.Go(func() error {
			if err := msrv.Serve(cp.API.LimitListener(cp.metricsLn, true)); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return msrv.Close()
		})
	}
	g.Go(func() error { return cp.Jobs.Run(gctx) })
	g.Go(func() error { cp.runWebSessionPruneLoop(gctx); return nil })
	g.Go(func() error { return cp.Logs.Run(gctx) })
	if cp.logCH != nil && cp.Config.LogRetention > 0 {
		g.Go(func() error { cp.logCH.RunRetention(gctx, cp.Config.LogRetention, cp.log); return nil })
	}
	g.Go(func() error { return cp.Sessions.Run(gctx) })
	if cp.ghApp != nil && cp.Config.GitHubRedeliverInterval > 0 {
		r := &github.Redeliverer{App: cp.ghApp, Seen: cp.Store.Deliveries().Seen}
		g.Go(func() error { return r.Run(gctx, cp.Config.GitHubRedeliverInterval) })
	}
	// Replicas sharing PostgreSQL wake each other's long polls.
	if r := cp.Store.Relay("nimbus_jobs"); r != nil {
		g.Go(func() error { cp.jobsWake.Connect(gctx, r, cp.log); return nil })
		g.Go(func() error { cp.sessionsWake.Connect(gctx, cp.Store.Relay("nimbus_sessions"), cp.log); return nil })
	}
	if cp.grpcLn != nil {
		gs := cp.Cache.NewGRPCServer()
		g.Go(func() error {
			// A stop that comes before Serve began (a quick restart) is
			// a stop, not a failure.
			if err := gs.Serve(cp.grpcLn); !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			stopped := make(chan struct{})
			go func() { gs.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				gs.Stop()
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// tlsConfig is the HTTPS configuration: the operator's certificate, or
// one from Nimbus's CA (--tls-auto). Client certificates of the CA are
// asked for and verified when given (remote Bazel proxies present one).
func (cp *ControlPlane) tlsConfig() (*tls.Config, error) {
	c := cp.Config
	var cert tls.Certificate
	var err error
	if c.TLSCertFile != "" {
		cert, err = tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls-cert-file: %w", err)
		}
	} else {
		opts := pki.IssueOptions{TTL: 90 * 24 * time.Hour}
		hosts := c.TLSHosts
		if len(hosts) == 0 {
			hosts = []string{"localhost", "127.0.0.1", "::1"}
			if h, err := os.Hostname(); err == nil {
				hosts = append(hosts, h)
			}
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				opts.IPAddresses = append(opts.IPAddresses, ip)
			} else {
				opts.DNSNames = append(opts.DNSNames, h)
			}
		}
		if cert, err = cp.CA.Issue(pki.Identity{Org: "nimbus", Kind: pki.KindServer, Name: "control-plane"}, opts); err != nil {
			return nil, fmt.Errorf("tls-auto: %w", err)
		}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: cp.CA.Pool(),
	}, nil
}

// ListenGRPC opens the cache's gRPC listener (before Serve), so that jobs
// learn its address.
func (cp *ControlPlane) ListenGRPC() error {
	if cp.Config.CacheGRPCListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", cp.Config.CacheGRPCListen)
	if err != nil {
		return fmt.Errorf("cache-grpc-listen: %w", err)
	}
	cp.grpcLn, cp.grpcAddr = ln, ln.Addr().String()
	return nil
}

// ListenMetrics opens --metrics-listen (Serve does when it was not done
// before), so that its address is known.
func (cp *ControlPlane) ListenMetrics() error {
	if cp.Config.MetricsListen == "" || cp.metricsLn != nil {
		return nil
	}
	ln, err := net.Listen("tcp", cp.Config.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics-listen: %w", err)
	}
	cp.metricsLn = ln
	return nil
}

// MetricsURL is where /metrics is served, or why it is not on the API's
// listener.
func (cp *ControlPlane) MetricsURL() string {
	switch {
	case cp.metricsLn != nil:
		return "http://" + cp.metricsLn.Addr().String() + "/metrics"
	case cp.Config.metricsAccess().Elsewhere != "":
		return "off on this listener (HTTPS without --metrics-token-file; see --metrics-listen)"
	}
	return cp.Config.PublicURL + "/metrics"
}

// GRPCURL is the cache's gRPC endpoint as Bazel takes it, or "off".
func (cp *ControlPlane) GRPCURL() string {
	if cp.grpcAddr == "" {
		return "off"
	}
	return "grpc://" + cp.grpcAddr
}

// Close saves the cache's index and releases the database.
func (cp *ControlPlane) Close() error {
	cp.ContainerRegistry.Close()
	cerr := cp.Cache.Close()
	if err := cp.Store.Close(); err != nil {
		return err
	}
	return cerr
}

// SetURL sets the URL agents and jobs reach the server at (once the
// listener's port is known) and records it in the data dir, where
// `nimbus ctl` finds it. Call it before Serve.
func (cp *ControlPlane) SetURL(url string) error {
	cp.Config.PublicURL = url
	if cp.Dashboard != nil {
		cp.Dashboard.SetPublicURL(url)
	}
	return os.WriteFile(filepath.Join(cp.Config.DataDir, "url"), []byte(url+"\n"), 0o600)
}

// runWebSessionPruneLoop deletes ended dashboard sessions every hour.
func (cp *ControlPlane) runWebSessionPruneLoop(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := cp.Web.Prune(ctx); err != nil && ctx.Err() == nil {
				cp.log.Warn("prune dashboard sessions", "err", err)
			} else if n > 0 {
				cp.log.Debug("pruned dashboard sessions", "count", n)
			}
		}
	}
}
