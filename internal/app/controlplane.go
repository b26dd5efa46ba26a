package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/nimbus-build/nimbus/internal/api"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/secrets"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
)

// ControlPlane is the server side of Nimbus, built and ready to serve.
type ControlPlane struct {
	Config   ServerConfig
	Store    *sqlstore.DB
	Keyring  *auth.Keyring
	Jobs     *jobs.Service
	API      *api.Server
	Registry *prometheus.Registry
	// Bootstrap is set when this start created the installation.
	Bootstrap *Bootstrap
	log       *slog.Logger
}

// OpenControlPlane opens the database (creating and migrating it), loads
// the master key (creating one on first start with the embedded
// database), the signing keys and the policy, and builds the services.
func OpenControlPlane(ctx context.Context, c ServerConfig, log *slog.Logger) (*ControlPlane, error) {
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
	st, err := sqlstore.Open(ctx, c.Database)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Config: c, Store: st, log: log}
	if err := cp.build(ctx, sealer); err != nil {
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
	minter, err := cp.githubApp(ctx, sec)
	if err != nil {
		return err
	}
	cp.Registry = prometheus.NewRegistry()
	cp.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := jobs.New(jobs.Options{Store: cp.Store, Config: c.jobsConfig(), Logger: cp.log, Registry: cp.Registry, Runners: minter})
	if err != nil {
		return err
	}
	cp.Jobs = svc
	cp.API = api.New(api.Options{
		Store: cp.Store, Jobs: svc, Auth: auth.NewAuthenticator(cp.Store, ring, nil), Keyring: ring, Policy: pol,
		Secrets: sec, Gatherer: cp.Registry, Logger: cp.log,
	})
	cp.Bootstrap, err = bootstrap(ctx, cp.Store, sec, c.DataDir)
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
	return jobs.GitHubRunnerMinter{App: app, RunnerGroupID: c.GitHubRunnerGroupID}, nil
}

// Serve serves the API on ln and runs the background loops until ctx
// ends, then shuts down gracefully.
func (cp *ControlPlane) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           cp.API,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Long polls and log streams end when the server stops.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { return cp.Jobs.Run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// Close releases the database.
func (cp *ControlPlane) Close() error { return cp.Store.Close() }

// WriteURL records the server's URL in the data dir, where `nimbus ctl`
// finds it.
func (cp *ControlPlane) WriteURL(url string) error {
	return os.WriteFile(filepath.Join(cp.Config.DataDir, "url"), []byte(url+"\n"), 0o600)
}
