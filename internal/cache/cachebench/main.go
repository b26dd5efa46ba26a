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

Load-tests a remote build cache and prints ops/s, MB/s, p50 and p99 for:
CAS GET and PUT of 4 KiB blobs, a PUT of an existing blob, FindMissingBlobs
of 1,000 digests, BatchUpdateBlobs and BatchReadBlobs of 100 x 4 KiB, and
64 MiB GET, PUT and ByteStream read.

  --target grpc://HOST:PORT        a REAPI server (ByteStream, batch calls)
  --target http://HOST:PORT/BASE   a Bazel HTTP cache (GET/PUT BASE/cas/<sha256>)

Without --target, an in-process Nimbus cache is started on loopback (in a
temporary directory, durable writes unless --no-sync) and measured over both
protocols, or the one --protocol names.

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
}

// Main runs the benchmark; it returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("nimbus bench cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.target, "target", "", "cache to measure: grpc://HOST:PORT or http://HOST:PORT/BASE (default: an in-process Nimbus cache)")
	fs.StringVar(&o.token, "token", "", "bearer token sent with every request")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "how long each small-blob row runs")
	fs.IntVar(&o.concurrency, "concurrency", 32, "concurrent requests for the 4 KiB rows")
	fs.Int64Var(&o.bigSize, "big-size", 64<<20, "size of the large blob rows in bytes")
	fs.IntVar(&o.bigCount, "big-count", 8, "repetitions of each large blob row")
	fs.StringVar(&o.rows, "rows", "", "comma-separated rows to run (default: all that the protocol has): "+strings.Join(rowNames(), ","))
	fs.BoolVar(&o.noSync, "no-sync", false, "in-process server only: acknowledge writes before they are durable")
	fs.StringVar(&o.dir, "dir", "", "in-process server only: storage directory (default: a temporary one, removed after)")
	fs.StringVar(&o.protocol, "protocol", "", "in-process server only: measure grpc or http alone (default: both)")
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
		fmt.Fprintln(stderr, "--protocol applies to the in-process server only; the scheme of --target names the protocol")
		return 2
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
