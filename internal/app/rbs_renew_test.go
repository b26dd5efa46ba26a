package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/agent"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
)

// certRecorder stands in for the session host (which needs a Bazel
// installation) in a test of the agent's certificate renewal against the
// real control plane: it records the certificates it is given.
type certRecorder struct {
	mu    sync.Mutex
	certs []*x509.Certificate
	roots *x509.CertPool
}

func (r *certRecorder) add(c tls.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.certs = append(r.certs, c.Leaf)
}

func (r *certRecorder) list() []*x509.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*x509.Certificate(nil), r.certs...)
}

func (r *certRecorder) Serve(ctx context.Context) error { <-ctx.Done(); return nil }
func (r *certRecorder) Close()                          {}
func (r *certRecorder) Sessions() []server.SessionInfo  { return nil }
func (r *certRecorder) StartSession(context.Context, server.SessionSpec) (server.Endpoint, error) {
	return server.Endpoint{}, errors.New("no sessions here")
}
func (r *certRecorder) StopSession(context.Context, string) error { return nil }
func (r *certRecorder) SetCertificate(c tls.Certificate) error {
	r.add(c)
	return nil
}

// An agent offering remote Bazel renews its tunnel certificate before it
// expires, for the same identity, without restarting: before this, a
// session host stopped accepting proxies when its first certificate ran
// out (after seven days).
func TestAgentRenewsTunnelCertificate(t *testing.T) {
	needSandbox(t)
	// The CA backdates certificates by 5 minutes: this one is valid for
	// about 6 seconds after it is issued.
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.RBSAgentCertTTL = 5*time.Minute + 6*time.Second })
	rec := &certRecorder{}
	ex, err := bwrap.New(bwrap.Options{WorkRoot: filepath.Join(apptest.SharedDir(t, "work"), "jobs")})
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{
		Server: h.URL, StateDir: t.TempDir(), JoinToken: h.JoinToken("linux"), Name: "renewer", Labels: []string{"linux"},
		Executor: ex, Logger: apptest.Logger(t),
		RBS: &agent.RBSConfig{
			Address: "127.0.0.1:1", InstallMD5: "0123456789abcdef0123456789abcdef", Version: "test", MaxSessions: 1,
			NewHost: func(cert tls.Certificate, roots *x509.CertPool) (agent.SessionHost, error) {
				rec.add(cert)
				return rec, nil
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for len(rec.list()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d certificates within 30s, want the first and two renewals", len(rec.list()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	certs := rec.list()
	first, err := pki.IdentityFromCert(certs[0])
	if err != nil || first.Kind != pki.KindAgent {
		t.Fatalf("first certificate: %v %v", first, err)
	}
	for i, c := range certs[1:] {
		id, err := pki.IdentityFromCert(c)
		if err != nil || id != first {
			t.Errorf("renewal %d is for %v (%v), want %v", i+1, id, err, first)
		}
		prev := certs[i]
		if !c.NotAfter.After(prev.NotAfter) {
			t.Errorf("renewal %d expires %v, not after the previous %v", i+1, c.NotAfter, prev.NotAfter)
		}
		// Renewed before the previous one ran out, not after.
		if c.NotBefore.Add(5 * time.Minute).After(prev.NotAfter) {
			t.Errorf("renewal %d issued at %v, after the previous expired at %v", i+1, c.NotBefore.Add(5*time.Minute), prev.NotAfter)
		}
	}
}
