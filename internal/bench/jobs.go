// Package bench holds `nimbus bench`: load generators that measure Nimbus
// on this machine and print tables.
package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
)

// JobsOptions configures `nimbus bench jobs`.
type JobsOptions struct {
	Postgres    string // postgres:// URL of a server to create a scratch database on; empty: SQLite only
	Webhooks    int
	Concurrency int
	Cycles      int
	Starts      int
	NoSandbox   bool
	Binary      string // the nimbus binary, for the idle RSS row
}

// row is one line of the table.
type row struct {
	engine, metric, value, goal string
}

// JobsMain is `nimbus bench jobs`.
func JobsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o JobsOptions
	fs := flag.NewFlagSet("nimbus bench jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Postgres, "postgres", "", "also measure on PostgreSQL: URL of a server where a scratch database may be created and dropped")
	fs.IntVar(&o.Webhooks, "webhooks", 5000, "signed workflow_job deliveries to send")
	fs.IntVar(&o.Concurrency, "concurrency", 16, "concurrent webhook senders and agents")
	fs.IntVar(&o.Cycles, "cycles", 3000, "lease+complete cycles")
	fs.IntVar(&o.Starts, "starts", 50, "webhook → sandboxed process start measurements (one at a time, idle agent)")
	fs.BoolVar(&o.NoSandbox, "no-sandbox", false, "skip the rows that need bubblewrap")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nimbus bench jobs [flags]

Measures the job loop on this machine, in process, over real HTTP on loopback:
signed webhooks accepted per second and their p99; lease+complete cycles per
second (agents on the agent API); webhook → sandboxed process started (an idle
agent running a runner script in bubblewrap; GitHub's JIT API is replaced by a
local stand-in, so its own latency is not counted); idle server RSS.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if exe, err := os.Executable(); err == nil {
		o.Binary = exe
	}
	var rows []row
	engines := []string{"sqlite"}
	if o.Postgres != "" {
		engines = append(engines, "postgres")
	}
	for _, e := range engines {
		fmt.Fprintf(stderr, "bench jobs: %s…\n", e)
		r, err := benchEngine(ctx, e, o, stderr)
		rows = append(rows, r...)
		if err != nil {
			fmt.Fprintf(stderr, "nimbus bench jobs: %s: %v\n", e, err)
			printRows(stdout, rows)
			return 1
		}
	}
	if o.Binary != "" {
		rss, err := idleRSS(ctx, o.Binary)
		if err != nil {
			fmt.Fprintf(stderr, "nimbus bench jobs: idle RSS: %v\n", err)
		} else {
			rows = append(rows, row{"sqlite", "idle server RSS", fmt.Sprintf("%.1f MB", float64(rss)/1e6), "< 100 MB"})
		}
	}
	printRows(stdout, rows)
	return 0
}

func printRows(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENGINE\tMETRIC\tVALUE\tGOAL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.engine, r.metric, r.value, r.goal)
	}
	tw.Flush()
}

// benchMinter stands in for GitHub's JIT API: it answers at once, so the
// start latency measures Nimbus alone.
type benchMinter struct{}

func (benchMinter) MintRunner(ctx context.Context, j store.Job, name string) (jobs.Runner, error) {
	return jobs.Runner{JITConfig: "bench-jit-" + name}, nil
}

func (benchMinter) RemoveRunner(ctx context.Context, j store.Job, id int64) error { return nil }

type server struct {
	cp     *app.ControlPlane
	url    string
	owner  *apiclient.Client
	secret []byte
	stop   func()
}

func startServer(ctx context.Context, engine, pg, dir string) (*server, error) {
	c := app.ServerConfig{
		DataDir: dir, Listen: "127.0.0.1:0", LogLevel: "error", LogFormat: "text", LeaseTTL: 30 * time.Second, MaxAttempts: 3,
		DefaultTimeout: time.Hour, MaxTimeout: 24 * time.Hour, PoolLabels: []string{"self-hosted", "linux", "x64", "nimbus"},
		GitHubAPIURL: "http://127.0.0.1:1",
	}
	if engine == "postgres" {
		c.Database = pg
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log := slog.New(slog.DiscardHandler)
	cp, err := app.OpenControlPlane(ctx, c, log, app.WithRunnerMinter(benchMinter{}))
	if err != nil {
		return nil, err
	}
	url, stop, err := serveInProcess(ctx, cp)
	if err != nil {
		return nil, err
	}
	s := &server{cp: cp, url: url, owner: apiclient.New(url, cp.Bootstrap.AdminToken), secret: []byte(cp.Bootstrap.WebhookSecret), stop: stop}
	if _, err := s.owner.LinkOrg(ctx, cp.Bootstrap.Org.ID, "bench", 4711); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func benchEngine(ctx context.Context, engine string, o JobsOptions, stderr io.Writer) ([]row, error) {
	dir, err := os.MkdirTemp("", "nimbus-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	pg := ""
	if engine == "postgres" {
		var drop func()
		pg, drop, err = scratchDatabase(ctx, o.Postgres)
		if err != nil {
			return nil, err
		}
		defer drop()
	}
	s, err := startServer(ctx, engine, pg, dir)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	var rows []row
	rate, p99, err := benchWebhooks(ctx, s, o)
	if err != nil {
		return rows, fmt.Errorf("webhooks: %w", err)
	}
	rows = append(rows, row{engine, "webhooks accepted/s", fmt.Sprintf("%.0f", rate), "≥ 1000"},
		row{engine, "webhook p99", ms(p99), "< 50 ms"})
	cycles, err := benchCycles(ctx, s, o)
	if err != nil {
		return rows, fmt.Errorf("lease cycles: %w", err)
	}
	rows = append(rows, row{engine, "lease+complete cycles/s", fmt.Sprintf("%.0f", cycles), "≥ 500"})
	if !o.NoSandbox {
		p50, p99, err := benchStarts(ctx, s, o, dir)
		if err != nil {
			return rows, fmt.Errorf("start latency: %w", err)
		}
		rows = append(rows, row{engine, "webhook → process start p50", ms(p50), "< 150 ms"},
			row{engine, "webhook → process start p99", ms(p99), ""})
	}
	return rows, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d)-1) * p)
	return d[i]
}

// payload is a workflow_job delivery in GitHub's shape (the fields Nimbus
// reads, and enough of the rest to weigh like a real one).
func payload(action string, jobID int64, labels string) []byte {
	return fmt.Appendf(nil, `{"action":%q,"workflow_job":{"id":%d,"run_id":%d,"run_attempt":1,"name":"build","labels":[%s],`+
		`"status":%q,"conclusion":null,"runner_id":null,"runner_name":null,"head_sha":"0123456789abcdef0123456789abcdef01234567",`+
		`"head_branch":"main","workflow_name":"CI","html_url":"https://github.com/bench/app/actions/runs/1/job/%d",`+
		`"steps":[],"created_at":"2026-01-01T00:00:00Z","started_at":"2026-01-01T00:00:00Z"},`+
		`"repository":{"id":99,"name":"app","full_name":"bench/app","private":true,"owner":{"id":4711,"login":"bench","type":"Organization"}},`+
		`"organization":{"id":4711,"login":"bench"},"installation":{"id":1},"sender":{"id":1,"login":"dev","type":"User"}}`,
		action, jobID, jobID, labels, action, jobID)
}

func post(ctx context.Context, hc *http.Client, s *server, id string, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", s.url+apiv1.RouteGitHubWebhook.Path, bytes.NewReader(body))
	mac := hmac.New(sha256.New, s.secret)
	mac.Write(body)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	req.Header.Set("X-GitHub-Event", "workflow_job")
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/bench")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("delivery %s: %d", id, resp.StatusCode)
	}
	return nil
}

func benchWebhooks(ctx context.Context, s *server, o JobsOptions) (float64, time.Duration, error) {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.Concurrency}}
	var next atomic.Int64
	lat := make([][]time.Duration, o.Concurrency)
	errs := make(chan error, o.Concurrency)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(o.Webhooks) {
					return
				}
				body := payload("queued", 1_000_000+n, `"self-hosted","nimbus"`)
				t := time.Now()
				if err := post(ctx, hc, s, "bench-"+strconv.FormatInt(n, 10), body); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, 0, err
	default:
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return float64(len(all)) / elapsed.Seconds(), percentile(all, 0.99), nil
}

func enroll(ctx context.Context, url string, owner *apiclient.Client, name string, labels []string) (*apiclient.Client, error) {
	jt, err := owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: labels})
	if err != nil {
		return nil, err
	}
	en, err := apiclient.New(url, jt.Token).Enroll(ctx, apiv1.Enroll{Name: name, MaxJobs: 1024})
	if err != nil {
		return nil, err
	}
	return apiclient.New(url, en.Credential), nil
}

func benchCycles(ctx context.Context, s *server, o JobsOptions) (float64, error) {
	// A fresh org, so the webhook jobs above do not count.
	org, err := s.owner.CreateOrg(ctx, apiv1.CreateOrg{Name: "cycles"})
	if err != nil {
		return 0, err
	}
	admin := apiclient.New(s.url, org.AdminToken.Secret)
	for i := range o.Cycles {
		if _, err := admin.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}}); err != nil {
			return 0, fmt.Errorf("submit %d: %w", i, err)
		}
	}
	agents := make([]*apiclient.Client, o.Concurrency)
	for i := range agents {
		c, err := enroll(ctx, s.url, admin, fmt.Sprint("bench-", i), []string{"linux"})
		if err != nil {
			return 0, err
		}
		agents[i] = c
	}
	var done atomic.Int64
	errs := make(chan error, len(agents))
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				l, err := c.Lease(ctx, 0)
				if err != nil {
					errs <- err
					return
				}
				if l == nil {
					return
				}
				zero := 0
				if _, err := c.CompleteJob(ctx, l.Job.ID, apiv1.Complete{Fence: l.Fence, State: "succeeded", ExitCode: &zero}); err != nil {
					errs <- err
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	if int(done.Load()) != o.Cycles {
		return 0, fmt.Errorf("%d cycles completed, want %d", done.Load(), o.Cycles)
	}
	return float64(o.Cycles) / elapsed.Seconds(), nil
}

// The runner script prints the time it started (ns since the epoch).
const startRunner = "#!/bin/sh\necho \"start $(date +%s%N)\"\n"

func benchStarts(ctx context.Context, s *server, o JobsOptions, dir string) (p50, p99 time.Duration, err error) {
	shared, err := os.MkdirTemp("", "nimbus-bench-work-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(shared)
	os.Chmod(shared, 0o711)
	runner := filepath.Join(shared, "runner")
	os.MkdirAll(runner, 0o755)
	if err := os.WriteFile(filepath.Join(runner, "run.sh"), []byte(startRunner), 0o755); err != nil {
		return 0, 0, err
	}
	jt, err := s.owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"self-hosted", "linux", "x64", "nimbus"}})
	if err != nil {
		return 0, 0, err
	}
	ac := app.AgentConfig{Server: s.url, JoinToken: jt.Token, StateDir: filepath.Join(dir, "agent"), WorkDir: filepath.Join(shared, "work"),
		Name: "bench", Labels: []string{"self-hosted", "linux", "x64", "nimbus"}, MaxJobs: 4, RunnerDir: runner, UIDBase: 170000}
	if err := ac.Validate(true); err != nil {
		return 0, 0, err
	}
	actx, cancel := context.WithCancel(ctx)
	a, err := app.NewAgent(actx, ac, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		return 0, 0, err
	}
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	defer func() { cancel(); <-adone }()
	// Drain the queue of webhook jobs from the first phase first: cancel them.
	for {
		list, err := s.owner.ListJobs(ctx, apiclient.JobQuery{State: "queued", Limit: 500})
		if err != nil {
			return 0, 0, err
		}
		if len(list.Jobs) == 0 {
			break
		}
		for _, j := range list.Jobs {
			s.owner.CancelJob(ctx, j.ID)
		}
	}
	hc := &http.Client{}
	var lat []time.Duration
	for i := range o.Starts {
		// Let the agent settle back into its idle long poll.
		time.Sleep(50 * time.Millisecond)
		t0 := time.Now()
		if err := post(ctx, hc, s, fmt.Sprint("start-", i), payload("queued", 5_000_000+int64(i), `"self-hosted","nimbus"`)); err != nil {
			return 0, 0, err
		}
		started, err := waitStart(ctx, s, 5_000_000+int64(i))
		if err != nil {
			return 0, 0, err
		}
		lat = append(lat, started.Sub(t0))
	}
	return percentile(lat, 0.5), percentile(lat, 0.99), nil
}

// waitStart finds the job of a GitHub job id and reads the start time its
// runner printed.
func waitStart(ctx context.Context, s *server, ghJob int64) (time.Time, error) {
	deadline := time.Now().Add(30 * time.Second)
	id := ""
	for time.Now().Before(deadline) {
		if id == "" {
			list, err := s.owner.ListJobs(ctx, apiclient.JobQuery{Limit: 5})
			if err != nil {
				return time.Time{}, err
			}
			for _, j := range list.Jobs {
				if j.GitHub != nil && j.GitHub.JobID == ghJob {
					id = j.ID
				}
			}
		}
		if id != "" {
			var out strings.Builder
			err := s.owner.FollowJobLogs(ctx, id, false, func(c apiv1.LogChunk) error {
				out.Write(c.Data)
				return nil
			})
			if err != nil {
				return time.Time{}, err
			}
			if f := strings.Fields(out.String()); len(f) >= 2 && f[0] == "start" {
				ns, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil {
					return time.Time{}, err
				}
				return time.Unix(0, ns), nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, errors.New("the runner did not start within 30s")
}

// scratchDatabase creates a database on a PostgreSQL server and returns its
// URL and a function that drops it.
func scratchDatabase(ctx context.Context, base string) (string, func(), error) {
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("nimbus_bench_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", nil, err
	}
	u, err := url.Parse(base)
	if err != nil {
		admin.Close()
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), func() {
		admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	}, nil
}

// idleRSS starts `nimbus server` on a fresh data dir, waits until it is
// ready and has idled a few seconds, and reads its resident set size.
func idleRSS(ctx context.Context, bin string) (int64, error) {
	dir, err := os.MkdirTemp("", "nimbus-bench-rss-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, bin, "server", "--data-dir", dir, "--listen", "127.0.0.1:0", "--cache-grpc-listen", "", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "url"))
		if err == nil {
			resp, err := http.Get(strings.TrimSpace(string(b)) + apiv1.RouteReadyz.Path)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			return 0, errors.New("server not ready within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// serveInProcess serves cp on a fresh loopback port until stop, which
// also closes cp (the in-process benches: no nimbus process of their own).
func serveInProcess(ctx context.Context, cp *app.ControlPlane) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cp.Close()
		return "", nil, err
	}
	url = "http://" + ln.Addr().String()
	cp.SetURL(url)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cp.Serve(sctx, ln) }()
	return url, func() { cancel(); <-done; cp.Close() }, nil
}
