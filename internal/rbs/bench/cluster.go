package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
	"github.com/nimbus-build/nimbus/internal/rbs/session"
)

// cluster is an agent host and a control plane (LocalBroker behind the
// sessions API over TLS) in this process.
type cluster struct {
	ca     *pki.CA
	host   *server.Host
	broker *session.LocalBroker
	url    string
	caFile string
	user   auth.Principal
	stop   func()
}

const benchToken = "nimbus-bench-token"

func startCluster(ctx context.Context, dir string, log *slog.Logger) (*cluster, error) {
	ca, err := pki.NewCA("nimbus bench CA")
	if err != nil {
		return nil, err
	}
	agentCert, err := ca.Issue(pki.AgentIdentity("bench", "local-agent"), pki.IssueOptions{})
	if err != nil {
		return nil, err
	}
	opts := server.Options{
		StorageRoot: filepath.Join(dir, "agent-storage"), Listen: "127.0.0.1:0",
		Certificate: agentCert, Roots: ca.Pool(), Logger: log,
	}
	if os.Geteuid() == 0 {
		opts.UIDs = server.UIDRange{First: 62000, Count: 2}
	}
	host, err := server.NewHost(opts)
	if err != nil {
		return nil, err
	}
	hctx, cancelHost := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { host.Serve(hctx) })

	user := auth.Principal{Kind: auth.KindUser, Org: "bench", ID: "bench", Name: "bench", Role: auth.RoleDeveloper}
	broker := session.NewLocalBroker(session.LocalBrokerOptions{CA: ca, Agents: []session.Agent{host}, Logger: log})
	cpCert, err := ca.Issue(pki.Identity{Org: "bench", Kind: pki.KindServer, Name: "control-plane"}, pki.IssueOptions{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		cancelHost()
		wg.Wait()
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cpCert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		cancelHost()
		wg.Wait()
		return nil, err
	}
	srv := &http.Server{
		Handler:           session.TokenAuth(map[string]auth.Principal{benchToken: user}, session.Handler(broker, log)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	wg.Go(func() { srv.Serve(ln) })
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		srv.Close()
		cancelHost()
		wg.Wait()
		return nil, err
	}
	return &cluster{
		ca: ca, host: host, broker: broker, url: fmt.Sprintf("https://%s", ln.Addr()), caFile: caFile, user: user,
		stop: func() {
			srv.Close()
			cancelHost()
			wg.Wait()
		},
	}, nil
}

// stopSessions ends every session, so the next command starts cold.
func (c *cluster) stopSessions(ctx context.Context) error {
	for _, s := range c.broker.Sessions() {
		if err := c.broker.Stop(ctx, c.user, s.ID); err != nil {
			return err
		}
	}
	return nil
}
