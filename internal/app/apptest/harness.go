// Package apptest starts a real control plane for tests: real database
// (SQLite or PostgreSQL), real HTTP server on 127.0.0.1:0, real keys and
// policy. Tests drive it over HTTP, as agents and users do.
package apptest

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// Harness is a running control plane.
type Harness struct {
	t      testing.TB
	Config app.ServerConfig
	CP     *app.ControlPlane
	URL    string
	// OwnerToken is the bootstrap owner token of the default org.
	OwnerToken    string
	OrgID         string
	WebhookSecret string

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
	addr   string
}

// Option adjusts the server configuration.
type Option func(*app.ServerConfig)

// Start starts a control plane on a new database of the engine.
func Start(t testing.TB, engine string, opts ...Option) *Harness {
	t.Helper()
	dir := t.TempDir()
	c := app.ServerConfig{
		DataDir: dir, Listen: "127.0.0.1:0", Database: storetest.DSN(t, engine), LogLevel: "info", LogFormat: "text",
		LeaseTTL: 5 * time.Second, MaxAttempts: 3, DefaultTimeout: time.Hour, MaxTimeout: 24 * time.Hour,
		OrgJobRate: 0, OrgJobBurst: 0, PoolLabels: []string{"self-hosted", "linux", "x64", "nimbus"},
		GitHubAPIURL: "http://127.0.0.1:1", GitHubRunnerGroupID: 1, CacheGRPCListen: "127.0.0.1:0",
	}
	for _, o := range opts {
		o(&c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	h := &Harness{t: t, Config: c}
	h.start()
	b := h.CP.Bootstrap
	if b == nil {
		t.Fatal("no bootstrap on a new database")
	}
	h.OwnerToken, h.OrgID, h.WebhookSecret = b.AdminToken, b.Org.ID, b.WebhookSecret
	t.Cleanup(h.Stop)
	return h
}

// Logger writes the server's logs to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func (h *Harness) start() {
	h.t.Helper()
	cp, err := app.OpenControlPlane(context.Background(), h.Config, Logger(h.t))
	if err != nil {
		h.t.Fatalf("open control plane: %v", err)
	}
	if err := cp.ListenGRPC(); err != nil {
		cp.Close()
		h.t.Fatalf("listen grpc: %v", err)
	}
	if err := cp.ListenMetrics(); err != nil {
		cp.Close()
		h.t.Fatalf("listen metrics: %v", err)
	}
	addr := h.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cp.Close()
		h.t.Fatalf("listen: %v", err)
	}
	h.addr = ln.Addr().String()
	h.URL = "http://" + h.addr
	if h.Config.TLS() {
		h.URL = "https://" + h.addr
	}
	if err := cp.SetURL(h.URL); err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Serve(ctx, ln) }()
	h.mu.Lock()
	h.CP, h.cancel, h.done = cp, cancel, done
	h.mu.Unlock()
}

// Stop stops the server and closes its database.
func (h *Harness) Stop() {
	h.mu.Lock()
	cancel, done, cp := h.cancel, h.done, h.CP
	h.cancel = nil
	h.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			h.t.Errorf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Errorf("server did not stop")
	}
	cp.Close()
}

// Restart stops the server and starts it again on the same database and
// address, as a crash and restart would.
func (h *Harness) Restart() {
	h.t.Helper()
	h.Stop()
	h.start()
}

// Client is an API client with a credential (trusting the server's own CA
// when it serves HTTPS).
func (h *Harness) Client(token string) *apiclient.Client {
	c := apiclient.New(h.URL, token)
	if h.Config.TLS() {
		hc, err := apiclient.HTTPClientTrusting(h.CAFile(), nil)
		if err != nil {
			h.t.Fatal(err)
		}
		c.HTTP = hc
	}
	return c
}

// CAFile is the server's CA certificate, which clients of --tls-auto trust.
func (h *Harness) CAFile() string { return filepath.Join(h.Config.DataDir, "ca.crt") }

// Owner is a client with the bootstrap owner token.
func (h *Harness) Owner() *apiclient.Client { return h.Client(h.OwnerToken) }

// WriteFile writes a file in the data dir (e.g. a GitHub App key).
func (h *Harness) WriteFile(name string, b []byte) string {
	p := filepath.Join(h.Config.DataDir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}
