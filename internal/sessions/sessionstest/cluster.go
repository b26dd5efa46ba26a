// Package sessionstest runs remote Bazel's real session broker
// (internal/sessions, over a SQLite store) for tests that need a control
// plane but not all of it: the sessions API's own tests and the remote
// Bazel end-to-end test. Agents are played by Drive, which does for a host
// what an agent's sessions loop does over HTTP: it follows the broker's
// orders, starts and stops sessions on the host, and reports them.
package sessionstest

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
	"github.com/nimbus-build/nimbus/internal/sessions"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// Cluster is the broker of one org on a fresh SQLite store.
type Cluster struct {
	Store  store.Store
	Broker *sessions.Broker
	CA     *pki.CA
	Org    string
}

// Options tune the broker.
type Options struct {
	IdleTTL time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// Start opens the store, creates org and builds the broker, signing with
// ca. Everything ends with the test.
func Start(t testing.TB, ca *pki.CA, org string, o Options) *Cluster {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if err := st.Orgs().Create(ctx, store.Org{ID: org, Name: org, CreatedAt: now()}); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := sessions.New(sessions.Options{Store: st, CA: ca, Policy: pol, IdleTTL: o.IdleTTL, PollInterval: 50 * time.Millisecond,
		Now: o.Now, Logger: o.Logger})
	return &Cluster{Store: st, Broker: b, CA: ca, Org: org}
}

// Host runs sessions: internal/rbs/server.Host, or a test's stand-in.
type Host interface {
	StartSession(ctx context.Context, spec server.SessionSpec) (server.Endpoint, error)
	StopSession(ctx context.Context, id string) error
}

// AddAgent enrolls an agent of the cluster's org with the id its tunnel
// certificate names (pki.AgentIdentity(org, id)), offering remote Bazel
// as offer says, and drives host from the broker's orders until the test
// ends.
func (c *Cluster) AddAgent(t testing.TB, id string, offer store.AgentRBS, host Host) store.Agent {
	t.Helper()
	ctx := context.Background()
	a := store.Agent{ID: id, OrgID: c.Org, Name: id, CreatedAt: time.Now(), LastSeenAt: time.Now()}
	if err := c.Store.Agents().Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := c.Store.Agents().SetRBS(ctx, id, &offer); err != nil {
		t.Fatal(err)
	}
	a.RBS = &offer
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Drive(dctx, c.Broker, a, host)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a
}

// Drive plays agent a for host until ctx ends: it follows the broker's
// orders, starts each session in its own goroutine and reports it ready
// (or failed), and stops and reports the ones the broker stops. It waits
// for the starts it began before it returns.
func Drive(ctx context.Context, b *sessions.Broker, a store.Agent, host Host) {
	var mu sync.Mutex
	running := map[string]string{} // session id -> starting or ready
	var starts sync.WaitGroup
	defer starts.Wait()
	for ctx.Err() == nil {
		mu.Lock()
		var status []apiv1.SessionStatus
		for id, state := range running {
			status = append(status, apiv1.SessionStatus{ID: id, State: state})
		}
		mu.Unlock()
		orders, err := b.Orders(ctx, a, status, 5*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				select { // the store is busy: try again
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
			continue
		}
		for _, o := range orders.Start {
			mu.Lock()
			_, known := running[o.ID]
			if !known {
				running[o.ID] = "starting"
			}
			mu.Unlock()
			if known {
				continue
			}
			starts.Add(1)
			go func() {
				defer starts.Done()
				report := apiv1.SessionReport{State: "failed"}
				spec, err := specOf(o)
				var ep server.Endpoint
				if err == nil {
					ep, err = host.StartSession(ctx, spec)
				}
				mu.Lock()
				if err != nil {
					report.Reason = err.Error()
					delete(running, o.ID)
				} else {
					report = apiv1.SessionReport{State: "ready", Address: ep.Address}
					running[o.ID] = "ready"
				}
				mu.Unlock()
				b.Report(context.WithoutCancel(ctx), a, o.ID, report)
			}()
		}
		for _, id := range orders.Stop {
			host.StopSession(ctx, id)
			mu.Lock()
			delete(running, id)
			mu.Unlock()
			b.Report(context.WithoutCancel(ctx), a, id, apiv1.SessionReport{State: "stopped"})
		}
	}
}

func specOf(o apiv1.SessionOrder) (server.SessionSpec, error) {
	user, err := pki.ParseIdentity(o.User)
	if err != nil {
		return server.SessionSpec{}, fmt.Errorf("session user: %w", err)
	}
	return server.SessionSpec{
		ID: o.ID, User: user, RepoHash: o.RepoHash, InstallMD5: o.InstallMD5, StartupOptions: o.StartupOptions,
		Mirror: server.Mirror{Workspace: o.Workspace, OutputBase: o.OutputBase, OutputUserRoot: o.OutputUserRoot},
	}, nil
}

// Auth authenticates the requests to next the way the control plane does
// for the sessions API, from a fixed table: each bearer token is a
// principal, put in the request's context. An unknown token passes on
// without one (next answers 401).
func Auth(tokens map[string]auth.Principal, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok {
			for tok, p := range tokens {
				if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) == 1 {
					next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}
