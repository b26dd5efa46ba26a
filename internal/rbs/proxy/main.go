package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
)

type mainConfig struct {
	newProvider func(rbs.ProxyConfig) (rbs.SessionProvider, error)
}

// MainOption customizes Main.
type MainOption func(*mainConfig)

// WithProviderFactory replaces how the SessionProvider is built from the
// configuration (default: sessionapi.NewClient, the control plane's API).
func WithProviderFactory(f func(rbs.ProxyConfig) (rbs.SessionProvider, error)) MainOption {
	return func(c *mainConfig) { c.newProvider = f }
}

// Main runs the proxy as `nimbus rbs proxy --config=<javabase>/nimbus-rbs.json
// <java arguments>`, which is what the bin/java of a javabase written by
// rbs.WriteJavabase execs. Its stdout and stderr are the server's jvm.out.
// It returns the process's exit status.
func Main(args []string, opts ...MainOption) int {
	mc := mainConfig{newProvider: func(c rbs.ProxyConfig) (rbs.SessionProvider, error) { return sessionapi.NewClient(c) }}
	for _, o := range opts {
		o(&mc)
	}
	if len(args) == 0 || !strings.HasPrefix(args[0], "--config=") {
		fmt.Fprintln(os.Stderr, "nimbus rbs proxy: the first argument must be --config=<file>")
		return 2
	}
	cfgPath := strings.TrimPrefix(args[0], "--config=")
	sa, err := ParseServerArgs(args[1:])
	if errors.Is(err, ErrBatch) {
		// The client prints a batch-mode server's output to the user.
		fmt.Fprintln(os.Stderr, "nimbus: remote Bazel needs a workspace and the client/server mode (not --batch)")
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nimbus rbs proxy: %v\n", err)
		return 2
	}
	// Bind at once: the client polls for the handshake files.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "nimbus rbs proxy: %v\n", err)
		return 1
	}
	cfg, cfgErr := rbs.LoadProxyConfig(cfgPath)
	level := slog.LevelInfo
	if cfgErr == nil && cfg.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if len(sa.JVMFlags) > 0 {
		log.Debug("dropping JVM flags", "flags", sa.JVMFlags)
	}
	popts := Options{Args: sa, Logger: log, FetchOutputs: true}
	if cfgErr != nil {
		popts.ProviderErr = fmt.Errorf("remote Bazel is misconfigured: %w (run nimbus rbs init again)", cfgErr)
	} else {
		popts.ClientEnv = cfg.ClientEnv
		popts.FetchOutputs = cfg.Outputs != rbs.OutputsNone
		if popts.Provider, err = mc.newProvider(cfg); err != nil {
			popts.Provider, popts.ProviderErr = nil, fmt.Errorf("remote Bazel: %w", err)
		}
	}
	popts.ClientHost, _ = os.Hostname()
	p, err := New(popts)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	if err := p.Serve(ctx, ln); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
