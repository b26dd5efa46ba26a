package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/nimbus-build/nimbus/internal/config"
)

// ServerMain is `nimbus server`: the control plane alone.
func ServerMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var c ServerConfig
	s := config.NewSet("nimbus server", stderr)
	c.Register(s)
	s.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nimbus server [flags]\n\nRuns the control plane: the API, GitHub webhooks, the job queue and leases.\nEvery flag can also be set as NIMBUS_<FLAG> in the environment or in the --config file.\n\nFlags:\n")
		s.PrintDefaults()
	}
	if err := s.Parse(args, getenv, "config"); err != nil {
		return 2
	}
	if err := c.Validate(); err != nil {
		fmt.Fprintf(stderr, "nimbus server: %v\n", err)
		return 2
	}
	log := NewLogger(stderr, c.LogLevel, c.LogFormat)
	cp, err := OpenControlPlane(ctx, c, log)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus server: %v\n", err)
		return 1
	}
	defer cp.Close()
	if err := cp.ListenGRPC(); err != nil {
		fmt.Fprintf(stderr, "nimbus server: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus server: %v\n", err)
		return 1
	}
	url := c.PublicURL
	if strings.HasSuffix(c.Listen, ":0") && strings.HasSuffix(url, ":0") {
		url = c.scheme() + "://" + ln.Addr().String()
	}
	if err := cp.SetURL(url); err != nil {
		fmt.Fprintf(stderr, "nimbus server: %v\n", err)
		return 1
	}
	if err := cp.ListenMetrics(); err != nil {
		fmt.Fprintf(stderr, "nimbus server: %v\n", err)
		return 1
	}
	printBootstrap(stdout, cp.Bootstrap)
	log.Info("serving", "listen", ln.Addr().String(), "url", url, "database", cp.Store.Engine(), "metrics", cp.MetricsURL())
	if err := cp.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "nimbus server: %v\n", err)
		return 1
	}
	return 0
}

func printBootstrap(w io.Writer, b *Bootstrap) {
	if b == nil {
		return
	}
	fmt.Fprintf(w, `First start: created org %q.
  Owner API token (shown once, saved at %s):
    %s
  GitHub webhook secret (saved at %s): paste it into your GitHub App's webhook settings.
`, b.Org.Name, b.AdminTokenFile, b.AdminToken, b.WebhookFile)
}
