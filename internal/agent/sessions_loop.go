package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
)

// RBSConfig makes the agent offer remote Bazel sessions.
type RBSConfig struct {
	// Address is the session tunnel as proxies reach it, host:port.
	Address     string
	InstallMD5  string
	Version     string
	MaxSessions int
	// NewHost builds the session host once the agent holds its tunnel
	// certificate (signed by the control plane for the agent's identity)
	// and the CA that signs users' certificates.
	NewHost func(cert tls.Certificate, roots *x509.CertPool) (SessionHost, error)
}

// SessionHost runs sessions: internal/rbs/server.Host.
type SessionHost interface {
	Serve(ctx context.Context) error
	Close()
	Sessions() []server.SessionInfo
	StartSession(ctx context.Context, spec server.SessionSpec) (server.Endpoint, error)
	StopSession(ctx context.Context, id string) error
	// SetCertificate renews the tunnel's certificate.
	SetCertificate(cert tls.Certificate) error
}

var _ SessionHost = (*server.Host)(nil)

// runSessionsLoop offers remote Bazel, then follows the control plane's
// orders: start a session, stop one. Each start runs in its own goroutine
// (a Bazel server takes seconds to come up) and is reported ready or
// failed; each stop is reported stopped.
func (a *Agent) runSessionsLoop(ctx context.Context) error {
	r := a.cfg.RBS
	cert, roots, err := a.registerRBS(ctx)
	if err != nil || ctx.Err() != nil {
		return err
	}
	host, err := r.NewHost(cert, roots)
	if err != nil {
		return fmt.Errorf("session host: %w", err)
	}
	a.log.Info("offering remote Bazel", "address", r.Address, "bazel", r.Version, "max_sessions", r.MaxSessions,
		"certificate_expires", cert.Leaf.NotAfter)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return host.Serve(gctx) })
	g.Go(func() error {
		defer host.Close()
		return a.followOrders(gctx, g, host)
	})
	g.Go(func() error { return a.renewTunnelCert(gctx, host, cert.Leaf) })
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// registerRBS offers remote Bazel to the control plane, which answers with
// the tunnel's certificate (for a new key) and the CA of users'
// certificates. Transient failures are retried; it returns a zero
// certificate and no error when ctx ends first.
func (a *Agent) registerRBS(ctx context.Context) (tls.Certificate, *x509.CertPool, error) {
	r := a.cfg.RBS
	key, csr, err := pki.NewCSR()
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	var reg apiv1.RBSRegistered
	for attempt := 0; ; attempt++ {
		_, err = a.cp.call(ctx, a.cfg.RequestTimeout, "", apiv1.PathAgentRBSRegister, apiv1.RBSRegister{
			CSR: string(csr), Address: r.Address, InstallMD5s: []string{r.InstallMD5}, Versions: []string{r.Version}, MaxSessions: r.MaxSessions,
		}, &reg)
		if err == nil {
			break
		}
		if errors.Is(err, ErrUnauthenticated) || !apiclient.Retryable(err) {
			return tls.Certificate{}, nil, fmt.Errorf("offer remote Bazel: %w", err)
		}
		if err := sleepCtx(ctx, apiclient.Backoff(attempt, a.cfg.MaxBackoff)); err != nil {
			return tls.Certificate{}, nil, nil
		}
	}
	cert, err := pki.KeyPair([]byte(reg.CertPEM), key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tunnel certificate: %w", err)
	}
	roots, err := pki.PoolFromPEM([]byte(reg.CAPEM))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("control plane CA: %w", err)
	}
	return cert, roots, nil
}

// renewTunnelCert registers again when two thirds of the tunnel
// certificate's remaining validity have passed, and has the host present
// the new certificate; sessions and their connections carry on. A failed
// renewal is retried with backoff (the old certificate serves meanwhile).
// It returns nil when ctx ends.
func (a *Agent) renewTunnelCert(ctx context.Context, host SessionHost, leaf *x509.Certificate) error {
	failures := 0
	for {
		wait := max(time.Until(leaf.NotAfter)*2/3, time.Second)
		if failures > 0 {
			wait = apiclient.Backoff(failures, a.cfg.MaxBackoff)
		}
		if sleepCtx(ctx, wait) != nil {
			return nil
		}
		cert, _, err := a.registerRBS(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = host.SetCertificate(cert)
		}
		if err != nil {
			failures++
			a.log.Warn("renew the tunnel certificate", "err", err, "failures", failures, "expires", leaf.NotAfter)
			continue
		}
		failures = 0
		leaf = cert.Leaf
		a.log.Info("tunnel certificate renewed", "expires", leaf.NotAfter)
	}
}

func (a *Agent) followOrders(ctx context.Context, g *errgroup.Group, host SessionHost) error {
	starting := map[string]bool{}
	done := make(chan string, 64)
	for failures := 0; ; {
		for drained := false; !drained; {
			select {
			case id := <-done:
				delete(starting, id)
			default:
				drained = true
			}
		}
		var running []apiv1.SessionStatus
		for _, s := range host.Sessions() {
			running = append(running, apiv1.SessionStatus{ID: s.ID, State: string(s.State)})
		}
		for id := range starting {
			running = append(running, apiv1.SessionStatus{ID: id, State: "starting"})
		}
		var orders apiv1.SessionOrders
		wait := 25 * time.Second
		_, err := a.cp.call(ctx, wait+longPollMargin, "", apiv1.PathAgentSessions, apiv1.SessionsSync{Sessions: running, WaitSeconds: int(wait / time.Second)}, &orders)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrUnauthenticated) || apiclient.IsStatus(err, http.StatusConflict) {
				return fmt.Errorf("sessions: %w", err)
			}
			failures++
			a.log.Warn("sessions long poll", "err", err, "failures", failures)
			if err := sleepCtx(ctx, apiclient.Backoff(failures, a.cfg.MaxBackoff)); err != nil {
				return nil
			}
			continue
		}
		failures = 0
		for _, o := range orders.Start {
			if starting[o.ID] {
				continue
			}
			spec, err := specOf(o)
			if err != nil {
				a.report(ctx, o.ID, apiv1.SessionReport{State: "failed", Reason: err.Error()})
				continue
			}
			starting[o.ID] = true
			g.Go(func() error {
				defer func() { done <- o.ID }()
				a.log.Info("starting session", "session_id", o.ID, "user", o.User, "workspace", o.Workspace)
				ep, err := host.StartSession(ctx, spec)
				if err != nil {
					a.log.Warn("session did not start", "session_id", o.ID, "err", err)
					a.report(ctx, o.ID, apiv1.SessionReport{State: "failed", Reason: err.Error()})
					return nil
				}
				a.report(ctx, o.ID, apiv1.SessionReport{State: "ready", Address: ep.Address})
				return nil
			})
		}
		for _, id := range orders.Stop {
			a.log.Info("stopping session", "session_id", id)
			if err := host.StopSession(ctx, id); err != nil {
				a.log.Warn("stop session", "session_id", id, "err", err)
			}
			a.report(ctx, id, apiv1.SessionReport{State: "stopped"})
		}
	}
}

func specOf(o apiv1.SessionOrder) (server.SessionSpec, error) {
	user, err := pki.ParseIdentity(o.User)
	if err != nil {
		return server.SessionSpec{}, fmt.Errorf("session user: %w", err)
	}
	spec := server.SessionSpec{
		ID: o.ID, User: user, RepoHash: o.RepoHash, InstallMD5: o.InstallMD5, StartupOptions: o.StartupOptions,
		Mirror: server.Mirror{Workspace: o.Workspace, OutputBase: o.OutputBase, OutputUserRoot: o.OutputUserRoot},
	}
	if o.Egress != nil {
		spec.Egress = *o.Egress
	}
	return spec, nil
}

// report tells the control plane about a session, retrying a few times.
func (a *Agent) report(ctx context.Context, id string, r apiv1.SessionReport) {
	for attempt := range 5 {
		_, err := a.cp.call(ctx, a.cfg.RequestTimeout, "", apiv1.PathAgentSession(id), r, nil)
		if err == nil || !apiclient.Retryable(err) || errors.Is(err, ErrUnauthenticated) {
			if err != nil {
				a.log.Warn("report session", "session_id", id, "state", r.State, "err", err)
			}
			return
		}
		if sleepCtx(ctx, apiclient.Backoff(attempt, a.cfg.MaxBackoff)) != nil {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
