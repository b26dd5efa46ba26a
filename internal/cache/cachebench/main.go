package cachebench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/policy"
)

const usage = `usage: nimbus bench cache [flags]

Load-tests build caches and prints ops/s, MB/s, p50 and p99 for: CAS GET and
PUT of 4 KiB blobs, a PUT of an existing blob, FindMissingBlobs of 1,000
digests, BatchUpdateBlobs and BatchReadBlobs of 100 x 4 KiB, and 64 MiB GET,
PUT and ByteStream read.

By default it measures what a user runs: it starts ` + "`nimbus up`" + ` (this
binary, or --nimbus) on a fresh data dir and free loopback ports, makes a
real API token of role ci, and drives the cache over gRPC and HTTP; and it
starts bazel-remote (--bazel-remote, else $NIMBUS_BAZEL_REMOTE, else
bazel-remote on $PATH) and drives it with the same load, row by row, then
prints both side by side with their ratio, the server CPU per 4 KiB GET
and each server's resident memory. Without bazel-remote it says so and
measures Nimbus alone. Then it saves and restores a --actions-size archive
with the real @actions/cache package (--actions-client, the directory of
its driver script with node_modules) through Nimbus, in MB/s end to end.

  --target grpc://HOST:PORT        one running REAPI server (ByteStream, batch calls)
  --target http://HOST:PORT/BASE   one running Bazel HTTP cache (GET/PUT BASE/cas/<sha256>)
  --in-process                     a Nimbus cache in this process, without
                                   authentication's cost (durable writes unless --no-sync)

Flags:
`

type options struct {
	target      string
	token       string
	duration    time.Duration
	concurrency int
	bigSize     int64
	bigCount    int
	rows        string
	noSync      bool
	dir         string
	protocol    string

	inProcess     bool
	nimbus        string
	bazelRemote   string
	actionsSize   int64
	actionsClient string
	getenv        func(string) string
	// cpu reads the CPU time of the server being measured (nil: unknown).
	cpu func() time.Duration
}

func (o *options) serverCPU() time.Duration {
	if o.cpu == nil {
		return 0
	}
	return o.cpu()
}

// Main runs the benchmark; it returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o := options{getenv: getenv}
	fs := flag.NewFlagSet("nimbus bench cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.target, "target", "", "one running cache to measure: grpc://HOST:PORT or http://HOST:PORT/BASE")
	fs.StringVar(&o.token, "token", "", "bearer token sent with every request")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "how long each small-blob row runs")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent requests for the 4 KiB rows")
	fs.Int64Var(&o.bigSize, "big-size", 64<<20, "size of the large blob rows in bytes")
	fs.IntVar(&o.bigCount, "big-count", 8, "repetitions of each large blob row")
	fs.StringVar(&o.rows, "rows", "", "comma-separated rows to run (default: all that the protocol has): "+strings.Join(rowNames(), ","))
	fs.BoolVar(&o.noSync, "no-sync", false, "in-process server only: acknowledge writes before they are durable")
	fs.StringVar(&o.dir, "dir", "", "in-process server only: storage directory (default: a temporary one, removed after)")
	fs.StringVar(&o.protocol, "protocol", "", "measure grpc or http alone (default: both; not with --target)")
	fs.BoolVar(&o.inProcess, "in-process", false, "measure a Nimbus cache in this process instead of `nimbus up` and bazel-remote")
	fs.StringVar(&o.nimbus, "nimbus", "", "the nimbus binary to start with `up` (default: this one)")
	fs.StringVar(&o.bazelRemote, "bazel-remote", "", "the bazel-remote binary to compare with (default: $NIMBUS_BAZEL_REMOTE, else bazel-remote on $PATH)")
	fs.Int64Var(&o.actionsSize, "actions-size", 1<<30, "size of the Actions cache archive (0: skip the Actions cache rows)")
	fs.StringVar(&o.actionsClient, "actions-client", "internal/cache/actionscache/testdata/client", "directory of the @actions/cache driver (drive.js and node_modules)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n", fs.Args())
		fs.Usage()
		return 2
	}
	switch {
	case o.protocol != "" && o.protocol != "grpc" && o.protocol != "http":
		fmt.Fprintf(stderr, "--protocol: want grpc or http, got %q\n", o.protocol)
		return 2
	case o.protocol != "" && o.target != "":
		fmt.Fprintln(stderr, "--protocol does not go with --target: the scheme of --target names the protocol")
		return 2
	}
	if o.target == "" && !o.inProcess {
		return compareMain(ctx, &o, stdout, stderr)
	}
	var targets []string
	if o.target != "" {
		targets = []string{o.target}
	} else {
		stop, ts, err := startLocal(&o, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "start in-process cache: %v\n", err)
			return 1
		}
		defer stop()
		for _, t := range ts {
			if o.protocol == "" || strings.HasPrefix(t, o.protocol+"://") {
				targets = append(targets, t)
			}
		}
	}
	for _, target := range targets {
		cl, err := newClient(target, o.token, o.concurrency)
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 2
		}
		results, err := run(ctx, cl, &o, stderr)
		cl.Close()
		printTable(stdout, target, results)
		if err != nil {
			fmt.Fprintf(stderr, "bench %s: %v\n", target, err)
			return 1
		}
	}
	return 0
}

// startLocal starts an in-process cache and returns its two targets.
func startLocal(o *options, stderr io.Writer) (stop func(), targets []string, err error) {
	dir := o.dir
	cleanup := func() {}
	if dir == "" {
		dir, err = os.MkdirTemp("", "nimbus-bench-cache-")
		if err != nil {
			return nil, nil, err
		}
		cleanup = func() { os.RemoveAll(dir) }
	}
	tokens := access.NewTokens()
	o.token = "bench-token"
	tokens.Add(o.token, auth.Principal{Kind: auth.KindUser, Org: "bench", ID: "bench", Role: auth.RoleCI})
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pol, err := policy.New(context.Background())
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	svc, err := cache.New(cache.Config{Dir: dir, NoSync: o.noSync}, tokens, policy.OrgAuthorizer{Engine: pol}, log, prometheus.NewRegistry())
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		svc.Close()
		cleanup()
		return nil, nil, err
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		svc.Close()
		cleanup()
		return nil, nil, err
	}
	g := svc.NewGRPCServer()
	hs := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second}
	gdone := make(chan struct{})
	hdone := make(chan struct{})
	go func() { defer close(gdone); g.Serve(gl) }()
	go func() { defer close(hdone); hs.Serve(hl) }()
	stop = func() {
		hs.Close()
		g.Stop()
		<-gdone
		<-hdone
		svc.Close()
		cleanup()
	}
	durable := "durable writes (group commit)"
	if o.noSync {
		durable = "writes not synced"
	}
	fmt.Fprintf(stderr, "in-process Nimbus cache in %s, %s\n", dir, durable)
	return stop, []string{"grpc://" + gl.Addr().String(), "http://" + hl.Addr().String() + "/cache"}, nil
}
