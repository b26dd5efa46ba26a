// Command nimbus is the whole of Nimbus in one binary: the control plane,
// the agent, both at once, the admin CLI and the benchmarks. It only
// dispatches; internal/app composes.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/bench"
	"github.com/nimbus-build/nimbus/internal/cache/cachebench"
	"github.com/nimbus-build/nimbus/internal/ctl"
	"github.com/nimbus-build/nimbus/internal/executor/execinit"
	rbsbench "github.com/nimbus-build/nimbus/internal/rbs/bench"
	"github.com/nimbus-build/nimbus/internal/registry/registrybench"
)

const usage = `Usage: nimbus <command> [flags]

Commands:
  up       control plane and one local agent in one process (embedded storage)
  server   the control plane alone
  agent    a host agent: enroll with a join token, then run jobs
  ctl      the admin and user CLI (run, jobs, logs, agents, tokens, orgs, audit)
  rbs      remote Bazel on a developer machine (init; proxy is what bazel starts)
  admin    maintenance on the server's host (rotate-master-key, recover-owner)
  bench    benchmarks that print tables (jobs, logs, sandbox, cache, rbs, registry, ui)
  version  print the version

Run "nimbus <command> --help" for a command's flags.
`

func main() {
	args := os.Args[1:]
	// The first process of a Docker job's container: nothing else of
	// nimbus runs there (no signal handling, no goroutines of ours).
	if len(args) > 0 && args[0] == "container-init" {
		os.Exit(execinit.Main(args[1:], os.Stdin, os.Stderr))
	}
	// `nimbus ctl` handles Ctrl-C itself (the first cancels a job, the
	// second stops waiting); the daemons stop gracefully on it.
	interrupts := make(chan os.Signal, 2)
	ctx := context.Background()
	if len(args) > 0 && args[0] == "ctl" {
		signal.Notify(interrupts, os.Interrupt)
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM)
		defer stop()
	} else {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	os.Exit(run(ctx, args, os.Stdout, os.Stderr, os.Getenv, interrupts))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, interrupts <-chan os.Signal) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return app.UpMain(ctx, rest, stdout, stderr, getenv)
	case "agent":
		return app.AgentMain(ctx, rest, stdout, stderr, getenv)
	case "server":
		return app.ServerMain(ctx, rest, stdout, stderr, getenv)
	case "ctl":
		return ctl.Main(ctx, rest, stdout, stderr, getenv, interrupts)
	case "rbs":
		return app.RBSMain(ctx, rest, stdout, stderr, getenv)
	case "admin":
		return app.AdminMain(ctx, rest, stdout, stderr, getenv)
	case "bench":
		return benchMain(ctx, rest, stdout, stderr, getenv)
	case "version", "--version":
		fmt.Fprintln(stdout, "nimbus", app.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "nimbus: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func benchMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	const usage = "Usage: nimbus bench jobs|logs|sandbox|cache|rbs|registry|ui [flags]\n\n  jobs   the job loop: webhooks/s, lease cycles/s, webhook → process start, idle RSS\n  logs   the log pipeline: ingest lines/s, search latency, live-tail latency (SQLite, PostgreSQL, ClickHouse)\n  sandbox  the job sandbox with and without its network: lease → first instruction, setup, teardown, jobs/s\n  cache  a load generator for any Bazel remote cache (gRPC or HTTP)\n  rbs    remote Bazel beside a local Bazel: cold start, warm no-op, one-file rebuild, sync\n  registry  the registry cache beside distribution's pull-through proxy: warm, cold and concurrent pulls, manifest HEAD/s\n  ui     the web dashboard: jobs page with 10k jobs, a 200k-line log, 100 idle live pages (server and Chromium)\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "jobs":
		return bench.JobsMain(ctx, args[1:], stdout, stderr)
	case "logs":
		return bench.LogsMain(ctx, args[1:], stdout, stderr)
	case "sandbox":
		return bench.SandboxMain(ctx, args[1:], stdout, stderr)
	case "cache":
		return cachebench.Main(ctx, args[1:], stdout, stderr, getenv)
	case "rbs":
		return rbsbench.Main(ctx, args[1:], stdout, stderr)
	case "registry":
		return registrybench.Main(ctx, args[1:], stdout, stderr)
	case "ui":
		return bench.UIMain(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "nimbus bench: unknown benchmark %q\n\n%s", args[0], usage)
	return 2
}
