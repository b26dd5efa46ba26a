package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/store"
)

// UpMain is `nimbus up`: the control plane and one local agent in one
// process, with embedded storage under the data dir.
func UpMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var sc ServerConfig
	var ac AgentConfig
	s := config.NewSet("nimbus up", stderr)
	sc.Register(s)
	ac.Register(s, false)
	s.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nimbus up [flags]\n\nRuns the control plane and one local agent in one process, with SQLite and local disk\nunder --data-dir. The first start creates the default org, an owner token and a webhook\nsecret. Every flag can also be set as NIMBUS_<FLAG> or in the --config file.\n\nFlags:\n")
		s.PrintDefaults()
	}
	if err := s.Parse(args, getenv, "config"); err != nil {
		return 2
	}
	if err := sc.Validate(); err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 2
	}
	ac.StateDir = filepath.Join(sc.DataDir, "agent")
	_, podmanErr := exec.LookPath("podman")
	sc.PoolLabels = upLabels(sc.PoolLabels, ac.DockerLabel, podmanErr == nil && os.Geteuid() == 0)
	ac.Labels = sc.PoolLabels
	ac.LogLevel, ac.LogFormat = sc.LogLevel, sc.LogFormat
	if err := ac.Validate(false); err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 2
	}
	log := NewLogger(stderr, sc.LogLevel, sc.LogFormat)
	cp, err := OpenControlPlane(ctx, sc, log)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 1
	}
	defer cp.Close()
	if err := cp.ListenGRPC(); err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 1
	}
	url := sc.PublicURL
	if strings.HasSuffix(sc.Listen, ":0") && strings.HasSuffix(url, ":0") {
		url = sc.scheme() + "://" + ln.Addr().String()
	}
	if sc.TLSAuto {
		ac.CAFile = filepath.Join(sc.DataDir, "ca.crt")
	}
	if err := cp.SetURL(url); err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 1
	}
	ac.Server = url
	ac.Metrics = cp.Registry // the agent's (warm pools) beside the server's
	if err := cp.ListenMetrics(); err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 1
	}
	if ac.JoinToken, err = localJoinToken(ctx, cp, ac.StateDir); err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 1
	}
	printBootstrap(stdout, cp.Bootstrap)
	fmt.Fprintf(stdout, `Nimbus is up.
  API and dashboard:  %[1]s
  GitHub webhooks:    %[1]s/webhooks/github
  Metrics:            %[5]s
  Build cache:        %[1]s/cache (Bazel HTTP), %[4]s (Bazel gRPC), %[1]s/actions-cache/ (actions/cache)
  Registry cache:     %[6]s (docker login %[6]s -u nimbus, a Nimbus token as the password)
  Data:               %[2]s (owner token in %[3]s)
Try: nimbus ctl run -- sh -c 'echo hello from a sandbox'
`, url, sc.DataDir, filepath.Join(sc.DataDir, "admin.token"), cp.GRPCURL(), cp.MetricsURL(), hostOf(url))

	serveCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	g := new(errgroup.Group)
	g.Go(func() error { return cp.Serve(serveCtx, ln) })
	// The agent stops first (gracefully, then at a second signal); the
	// server outlives it so its last reports land.
	code := runAgent(ctx, ac, log, stderr)
	stopServer()
	if err := g.Wait(); err != nil {
		fmt.Fprintf(stderr, "nimbus up: %v\n", err)
		return 1
	}
	return code
}

// localJoinToken makes a one-time join token for the embedded agent when
// it has no credential yet, straight in the store.
func localJoinToken(ctx context.Context, cp *ControlPlane, stateDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(stateDir, "credential.json")); err == nil {
		return "", nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	orgs, err := cp.Store.Orgs().List(ctx)
	if err != nil {
		return "", err
	}
	var org store.Org
	for _, o := range orgs {
		if o.Name == "default" {
			org = o
		}
	}
	if org.ID == "" {
		return "", errors.New("no default org to enroll the local agent in")
	}
	secret, hash := auth.NewSecret(auth.JoinTokenPrefix)
	now := time.Now()
	jt := store.JoinToken{ID: ids.New("jtk"), OrgID: org.ID, Hash: hash, Labels: cp.Config.PoolLabels, CreatedBy: "system:up",
		Role: string(auth.RoleOwner), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	err = audit.New(cp.Store, nil, nil).Do(ctx, func(r *audit.Tx) error {
		r.Audit(store.AuditEntry{At: now, OrgID: org.ID, Actor: "system:up", Action: "agent.join_token_created",
			Target: jt.ID, Detail: map[string]string{"labels": strings.Join(jt.Labels, ","), "for": "local agent"}})
		return r.Tokens().CreateJoinToken(ctx, jt)
	})
	return secret, err
}

// hostOf is a URL's host[:port], as image references name a registry.
func hostOf(u string) string {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		rest = u
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}

// upLabels are the labels nimbus up serves and its agent offers: the
// pool's, and the Docker label when this host can give jobs a daemon of
// their own (Podman installed, the agent root).
func upLabels(pool []string, dockerLabel string, canDocker bool) []string {
	if !canDocker || dockerLabel == "" || slices.Contains(pool, dockerLabel) {
		return pool
	}
	return append(slices.Clone(pool), dockerLabel)
}
