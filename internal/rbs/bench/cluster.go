package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
)

// cluster is the product in this process: a control plane (SQLite, the
// HTTP API, the session broker) and an agent offering remote Bazel, the
// same code `nimbus server` and `nimbus agent --rbs-listen` run.
type cluster struct {
	cp    *app.ControlPlane
	url   string
	owner *apiclient.Client
	// token is the bench user's API token (a developer).
	token string
	stop  func()
}

func startCluster(ctx context.Context, dir string, log *slog.Logger) (*cluster, error) {
	sc := app.ServerConfig{
		DataDir: filepath.Join(dir, "control-plane"), Listen: "127.0.0.1:0", LogLevel: "warn", LogFormat: "text",
		LeaseTTL: 30 * time.Second, MaxAttempts: 3, DefaultTimeout: time.Hour, MaxTimeout: 24 * time.Hour,
		PoolLabels: []string{"self-hosted", "linux", "x64", "nimbus"}, GitHubAPIURL: "http://127.0.0.1:1",
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	cp, err := app.OpenControlPlane(ctx, sc, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cp.Close()
		return nil, err
	}
	url := "http://" + ln.Addr().String()
	cp.SetURL(url)
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { cp.Serve(cctx, ln) })
	c := &cluster{cp: cp, url: url, owner: apiclient.New(url, cp.Bootstrap.AdminToken)}
	c.stop = func() {
		cancel()
		wg.Wait()
		cp.Close()
	}
	if err := c.startAgent(cctx, &wg, dir, log); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// startAgent enrolls an agent offering remote Bazel, runs it until ctx
// ends, waits until the control plane knows its offer, and makes the bench
// user's token.
func (c *cluster) startAgent(ctx context.Context, wg *sync.WaitGroup, dir string, log *slog.Logger) error {
	labels := []string{"self-hosted", "linux", "x64", "nimbus"}
	jt, err := c.owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: labels})
	if err != nil {
		return err
	}
	tunnel, err := freePort()
	if err != nil {
		return err
	}
	work := filepath.Join(dir, "agent-work")
	ac := app.AgentConfig{Server: c.url, JoinToken: jt.Token, StateDir: filepath.Join(dir, "agent"), WorkDir: work, Name: "bench",
		Labels: labels, MaxJobs: 1, UIDBase: 171000, RBSListen: tunnel, RBSStorageRoot: filepath.Join(dir, "agent-storage"),
		RBSMaxSessions: 2, RBSInstallBase: "/usr/share/bazel", RBSUIDBase: 62000}
	if err := os.MkdirAll(work, 0o711); err != nil {
		return err
	}
	if err := ac.Validate(true); err != nil {
		return err
	}
	a, err := app.NewAgent(ctx, ac, log)
	if err != nil {
		return err
	}
	wg.Go(func() { a.Run(ctx) })
	deadline := time.Now().Add(30 * time.Second)
	for offered := false; !offered; {
		agents, err := c.cp.Store.Agents().List(ctx, c.cp.Bootstrap.Org.ID)
		if err != nil {
			return err
		}
		for _, ag := range agents {
			offered = offered || ag.RBS != nil
		}
		if time.Now().After(deadline) {
			return errors.New("the agent did not offer remote Bazel within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok, err := c.owner.CreateToken(ctx, apiv1.CreateToken{Name: "bench", Role: "developer"})
	if err != nil {
		return err
	}
	c.token = tok.Secret
	return nil
}

// freePort returns a loopback address no one listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// session returns the one live session.
func (c *cluster) session(ctx context.Context) (apiv1.Session, error) {
	list, err := c.owner.ListSessions(ctx, false)
	if err != nil {
		return apiv1.Session{}, err
	}
	if len(list) != 1 {
		return apiv1.Session{}, fmt.Errorf("want one session, have %d", len(list))
	}
	return list[0], nil
}

// stopSessions ends every session and waits until their agent has stopped
// them, so the next command starts cold.
func (c *cluster) stopSessions(ctx context.Context) error {
	list, err := c.owner.ListSessions(ctx, false)
	if err != nil {
		return err
	}
	for _, s := range list {
		if _, err := c.owner.StopSession(ctx, s.ID); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		live, err := c.owner.ListSessions(ctx, false)
		if err != nil || len(live) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d sessions still live a minute after being stopped", len(live))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
