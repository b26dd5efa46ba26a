package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/protocol/tunnelpb"
	"github.com/nimbus-build/nimbus/internal/rbs/srcsync"
)

// config is the command line of nimbus bench rbs.
type config struct {
	files    int
	runs     int
	proxyCmd []string
	workdir  string
	keep     bool
	local    bool
}

// Main runs the benchmark and prints its table on stdout.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nimbus bench rbs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	files := fs.Int("files", 10000, "source files in the generated workspace (packages of 100)")
	runs := fs.Int("runs", 5, "repetitions of each warm measurement (the median is printed)")
	proxyCmd := fs.String("proxy-cmd", "", "command the javabase's bin/java runs, space separated (default: this executable with \"rbs proxy\")")
	workdir := fs.String("workdir", "", "directory for workspaces and storage (default: a new temporary directory)")
	keep := fs.Bool("keep", false, "keep the work directory")
	withLocal := fs.Bool("local", true, "also measure a local Bazel, for comparison")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := config{files: *files, runs: max(*runs, 1), workdir: *workdir, keep: *keep, local: *withLocal}
	if *proxyCmd != "" {
		cfg.proxyCmd = strings.Fields(*proxyCmd)
	} else {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "nimbus bench rbs: %v\n", err)
			return 1
		}
		cfg.proxyCmd = []string{exe, "rbs", "proxy"}
	}
	res, err := run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus bench rbs: %v\n", err)
		return 1
	}
	res.print(stdout, cfg)
	return 0
}

// side is one way of running Bazel: local or remote.
type side struct {
	name      string
	workspace string
	env       []string
}

func (s side) bazel(ctx context.Context, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "bazel", args...)
	cmd.Dir = s.workspace
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: bazel %s: %v\n%s", s.name, strings.Join(args, " "), err, out.String())
	}
	return d, nil
}

type measurements struct {
	first, noop, edit, cold time.Duration
}

type results struct {
	local, remote measurements
	sync          time.Duration
	syncWatched   time.Duration
	syncEntries   int
}

func run(ctx context.Context, cfg config, progress io.Writer) (results, error) {
	var res results
	for _, tool := range []string{"bazel", "bwrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return res, fmt.Errorf("%s is needed (apt-get install bazel-bootstrap bubblewrap)", tool)
		}
	}
	dir := cfg.workdir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "nimbus-bench-rbs-"); err != nil {
			return res, err
		}
		if !cfg.keep {
			defer os.RemoveAll(dir)
		}
	}
	// Sandboxes run as other uids: they must reach their storage.
	if err := os.Chmod(dir, 0o711); err != nil {
		return res, err
	}
	log := slog.New(slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := startCluster(ctx, dir, log)
	if err != nil {
		return res, err
	}
	defer c.stop()

	home := filepath.Join(dir, "home")
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "USER=bench"}
	local := side{name: "local", workspace: filepath.Join(dir, "local", "ws"), env: env}
	remote := side{name: "remote", workspace: filepath.Join(dir, "remote", "ws"), env: env}
	for _, s := range []side{local, remote} {
		if err := writeWorkspace(s.workspace, cfg.files); err != nil {
			return res, err
		}
		rc := fmt.Sprintf("startup --output_user_root=%s\nbuild --curses=no --color=no\n", filepath.Join(filepath.Dir(s.workspace), "out"))
		if err := os.WriteFile(filepath.Join(s.workspace, ".bazelrc"), []byte(rc), 0o644); err != nil {
			return res, err
		}
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte(c.token+"\n"), 0o600); err != nil {
		return res, err
	}
	javabase := filepath.Join(dir, "remote", "javabase")
	if err := rbs.WriteJavabase(javabase, cfg.proxyCmd, rbs.ProxyConfig{Server: c.url, Credentials: creds}); err != nil {
		return res, err
	}
	if err := rbs.AddToBazelrc(remote.workspace, javabase); err != nil {
		return res, err
	}
	defer local.bazel(context.WithoutCancel(ctx), "shutdown")
	defer remote.bazel(context.WithoutCancel(ctx), "shutdown")

	type measured struct {
		side
		m     *measurements
		noops []time.Duration
		edits []time.Duration
	}
	sides := []*measured{{side: local, m: &res.local}, {side: remote, m: &res.remote}}
	if !cfg.local {
		sides = sides[1:]
	}
	// Steps are interleaved between the sides, so that a change in the
	// machine's load hits both alike.
	for _, s := range sides {
		fmt.Fprintf(progress, "%s: first build of %d files…\n", s.name, cfg.files)
		if s.m.first, err = s.bazel(ctx, "build", "//..."); err != nil {
			return res, err
		}
		// Two untimed no-op builds: "warm" includes the server's JIT.
		for range 2 {
			if _, err := s.bazel(ctx, "build", "//..."); err != nil {
				return res, err
			}
		}
	}
	fmt.Fprintf(progress, "warm no-op builds…\n")
	for range cfg.runs {
		for _, s := range sides {
			d, err := s.bazel(ctx, "build", "//...")
			if err != nil {
				return res, err
			}
			s.noops = append(s.noops, d)
		}
	}
	fmt.Fprintf(progress, "one-file-changed rebuilds…\n")
	for i := range cfg.runs {
		for _, s := range sides {
			if err := editFile(s.workspace, i); err != nil {
				return res, err
			}
			d, err := s.bazel(ctx, "build", "//...")
			if err != nil {
				return res, err
			}
			s.edits = append(s.edits, d)
		}
	}
	for _, s := range sides {
		s.m.noop, s.m.edit = medianOf(s.noops), medianOf(s.edits)
		fmt.Fprintf(progress, "%s: cold start…\n", s.name)
		if _, err := s.bazel(ctx, "shutdown"); err != nil {
			return res, err
		}
		if s.name == "remote" {
			if err := c.stopSessions(ctx); err != nil {
				return res, err
			}
		}
		if s.m.cold, err = s.bazel(ctx, "build", "//..."); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(progress, "remote: source sync of one changed file…\n")
	res.sync, res.syncEntries, err = measureSync(ctx, c, remote.workspace, filepath.Join(dir, "sync-full", "state"), cfg.runs, false)
	if err != nil {
		return res, err
	}
	res.syncWatched, _, err = measureSync(ctx, c, remote.workspace, filepath.Join(dir, "sync-watched", "state"), cfg.runs, true)
	return res, err
}

// measureSync syncs the workspace over the real mTLS tunnel of the live
// session, then measures syncs after one edit each.
func measureSync(ctx context.Context, c *cluster, ws, state string, runs int, watch bool) (time.Duration, int, error) {
	s, err := c.session(ctx)
	if err != nil {
		return 0, 0, err
	}
	id, org := s.ID, c.cp.Bootstrap.Org.ID
	cert, err := c.cp.CA.Issue(pki.UserIdentity(org, s.User), pki.IssueOptions{TTL: time.Hour})
	if err != nil {
		return 0, 0, err
	}
	tls := pki.ClientConfig(c.cp.CA.Pool(), cert, pki.AgentIdentity(org, s.AgentID))
	conn, err := grpc.NewClient("passthrough:///"+s.Address, grpc.WithTransportCredentials(credentials.NewTLS(tls)))
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	tun := tunnelpb.NewTunnelClient(conn)
	open := func(ctx context.Context) (srcsync.SyncStreamClient, error) {
		return tun.Sync(metadata.AppendToOutgoingContext(ctx, rbs.SessionMetadataKey, id))
	}
	client := srcsync.NewClient(ws, state, slog.New(slog.DiscardHandler))
	if watch {
		if err := client.Watch(); err != nil {
			return 0, 0, err
		}
		defer client.Close()
	}
	for range 2 { // the second sync reads the directories watched after the first
		if _, err := client.Sync(ctx, id, open); err != nil {
			return 0, 0, err
		}
	}
	entries := 0
	d, err := median(runs, func(i int) (time.Duration, error) {
		edit := 1000 + i
		if watch {
			edit += 1000
		}
		if err := editFile(ws, edit); err != nil {
			return 0, err
		}
		st, err := client.Sync(ctx, id, open)
		if err == nil && st.Blobs != 1 {
			err = fmt.Errorf("sync moved %d contents, want 1", st.Blobs)
		}
		entries = st.Scan.Entries
		return st.Duration, err
	})
	return d, entries, err
}

func medianOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func median(n int, f func(i int) (time.Duration, error)) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		d, err := f(i)
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		return 0, errors.New("no runs")
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}

func (r results) print(w io.Writer, cfg config) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "remote Bazel benchmark: %d source files, median of %d runs\n\n", cfg.files, cfg.runs)
	fmt.Fprintln(tw, "\tlocal\tremote\tremote/local\tgoal\t")
	row := func(name string, l, rm time.Duration, goal string) {
		if !cfg.local {
			fmt.Fprintf(tw, "%s\t-\t%s\t-\t%s\t\n", name, secs(rm), goal)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f×\t%s\t\n", name, secs(l), secs(rm), float64(rm)/float64(max(l, 1)), goal)
	}
	row("first build (empty caches)", r.local.first, r.remote.first, "")
	row("warm no-op build", r.local.noop, r.remote.noop, "≤ 1.30×")
	row("one-file-changed rebuild", r.local.edit, r.remote.edit, "")
	row("cold start (new server, no-op)", r.local.cold, r.remote.cold, "remote < 10s")
	fmt.Fprintf(tw, "sync, one file changed, full scan\t\t%s\t\t< 200ms (%d entries)\t\n", secs(r.sync), r.syncEntries)
	fmt.Fprintf(tw, "sync, one file changed, inotify\t\t%s\t\t(as the proxy runs it)\t\n", secs(r.syncWatched))
	tw.Flush()
}

func secs(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
