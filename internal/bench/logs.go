package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/logs/clickhouse"
)

// LogsOptions configures `nimbus bench logs`.
type LogsOptions struct {
	Postgres   string // postgres:// URL for a scratch database; empty: not measured
	ClickHouse string // http:// URL of a ClickHouse server for a scratch database; empty: not measured
	Jobs       int
	Lines      int
	Searches   int
	TailLines  int
	NoSandbox  bool
	NoSQLite   bool
	// SearchLines, when more than Jobs × Lines, is how many lines the
	// search rows run over: the rest are seeded (seedLogLines).
	SearchLines int
	CPUProfile  string // file for a CPU profile of the ingest phase; empty: none
	// BatchDelay is the server's --log-batch-delay on ClickHouse
	// (negative: the server's default).
	BatchDelay time.Duration
	// BatchLines and BatchBytes are the server's --log-batch-lines and
	// --log-batch-size on ClickHouse (0: the server's defaults).
	BatchLines int
	BatchBytes int64
}

// LogsMain is `nimbus bench logs`.
func LogsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o LogsOptions
	fs := flag.NewFlagSet("nimbus bench logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Postgres, "postgres", "", "also measure PostgreSQL: URL of a server where a scratch database may be created and dropped")
	fs.StringVar(&o.ClickHouse, "clickhouse", "", "also measure ClickHouse: http://host:8123 of a server where a scratch database may be created and dropped")
	fs.IntVar(&o.Jobs, "jobs", 50, "concurrent jobs streaming output")
	fs.IntVar(&o.Lines, "lines", 20000, "lines each job streams (jobs × lines are then searched)")
	fs.IntVar(&o.Searches, "searches", 20, "searches per query measured")
	fs.IntVar(&o.SearchLines, "search-lines", 0, "lines stored for the search rows (e.g. 10000000): those ingest did not store are seeded by bulk writes into the store (not the API; a row says how many and how fast); 0: only what ingest stored")
	fs.IntVar(&o.TailLines, "tail-lines", 200, "lines of the live-tail measurement (one every 20 ms)")
	fs.BoolVar(&o.NoSandbox, "no-sandbox", false, "skip the live-tail rows, which run a job in bubblewrap")
	fs.DurationVar(&o.BatchDelay, "clickhouse-batch-delay", -1, "the server's --log-batch-delay on ClickHouse (negative: the server's own, "+logs.DefaultBatchConfig().Delay.String()+")")
	fs.IntVar(&o.BatchLines, "clickhouse-batch-lines", 0, fmt.Sprintf("the server's --log-batch-lines on ClickHouse (0: its default, %d)", logs.ClickHouseBatchLines))
	fs.Int64Var(&o.BatchBytes, "clickhouse-batch-bytes", 0, fmt.Sprintf("the server's --log-batch-size on ClickHouse, in bytes (0: its default, %d)", logs.ClickHouseBatchBytes))
	fs.BoolVar(&o.NoSQLite, "no-sqlite", false, "skip SQLite (measure only the stores given)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each store's ingest phase (server and bench clients in this process) to this file, suffixed with .sqlite, .postgres, .clickhouse")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nimbus bench logs [flags]

Measures the log pipeline on this machine, in process, over real HTTP on
loopback: lines ingested per second with --jobs jobs streaming at once through
the agent API; search over everything stored (jobs × lines, or
--search-lines, the difference seeded by bulk writes into the store)
through the search API, p50 and p99; live-tail latency from a line written in a
bubblewrap sandbox (it prints the time) to a Server-Sent Events client.
SQLite (unless --no-sqlite); PostgreSQL and ClickHouse when given.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var engines []string
	if !o.NoSQLite {
		engines = append(engines, "sqlite")
	}
	if o.Postgres != "" {
		engines = append(engines, "postgres")
	}
	if o.ClickHouse != "" {
		engines = append(engines, "clickhouse")
	}
	var rows []row
	for _, e := range engines {
		fmt.Fprintf(stderr, "bench logs: %s…\n", e)
		r, err := benchLogsEngine(ctx, e, o, stderr)
		rows = append(rows, r...)
		if err != nil {
			fmt.Fprintf(stderr, "nimbus bench logs: %s: %v\n", e, err)
			printRows(stdout, rows)
			return 1
		}
	}
	printRows(stdout, rows)
	return 0
}

// rareLiteral is the rare search: one line of the ingested output (job 7's
// line 1234, with --jobs over 7 and --lines over 1234).
const rareLiteral = `job 7 line 1234: `

func benchLogsEngine(ctx context.Context, engine string, o LogsOptions, stderr io.Writer) ([]row, error) {
	dir, err := os.MkdirTemp("", "nimbus-bench-logs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	c := app.ServerConfig{
		DataDir: dir, Listen: "127.0.0.1:0", LogLevel: "error", LogFormat: "text", LeaseTTL: 30 * time.Minute, MaxAttempts: 3,
		DefaultTimeout: time.Hour, MaxTimeout: 24 * time.Hour, PoolLabels: []string{"self-hosted", "linux", "x64", "nimbus"},
		GitHubAPIURL: "http://127.0.0.1:1",
	}
	c.LogBatch.QueueBytes = 256 << 20
	switch engine {
	case "postgres":
		pg, drop, err := scratchDatabase(ctx, o.Postgres)
		if err != nil {
			return nil, err
		}
		defer drop()
		c.Database = pg
	case "clickhouse":
		c.LogStore = fmt.Sprintf("%s/nimbus_bench_%d", strings.TrimRight(o.ClickHouse, "/"), time.Now().UnixNano())
		c.LogBatch.Delay = logs.DefaultBatchConfig().Delay
		if o.BatchDelay >= 0 {
			c.LogBatch.Delay = o.BatchDelay
		}
		c.LogBatch.Lines, c.LogBatch.Bytes = o.BatchLines, o.BatchBytes
		defer func() {
			if s, err := clickhouse.Open(context.Background(), c.LogStore, clickhouse.Options{}); err == nil {
				s.DropDatabase(context.Background())
			}
		}()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cp, err := app.OpenControlPlane(ctx, c, slog.New(slog.DiscardHandler), app.WithRunnerMinter(benchMinter{}))
	if err != nil {
		return nil, err
	}
	url, stop, err := serveInProcess(ctx, cp)
	if err != nil {
		return nil, err
	}
	defer stop()
	owner := apiclient.New(url, cp.Bootstrap.AdminToken)

	var rows []row
	goal := map[string]string{"sqlite": "≥ 100k", "clickhouse": "≥ 500k"}[engine]
	if o.CPUProfile != "" {
		o.CPUProfile += "." + engine
	}
	rate, total, err := benchIngest(ctx, url, owner, o)
	if err != nil {
		return rows, fmt.Errorf("ingest: %w", err)
	}
	rows = append(rows, row{engine, fmt.Sprintf("ingest lines/s, %d jobs at once", o.Jobs), fmt.Sprintf("%.0f", rate), goal})
	if engine == "sqlite" {
		// SQLite's search index is brought up to date behind the writer:
		// how far behind ingest left it, a search meanwhile (it reads
		// the lines not yet indexed), and how long the index took to
		// catch up.
		lag, err := cp.Store.LogIndexLag(ctx)
		if err != nil {
			return rows, err
		}
		fmt.Fprintf(stderr, "bench logs: %s: %d lines not yet in the search index…\n", engine, lag)
		start := time.Now()
		if p50, p99, n, err := benchSearch(ctx, owner, rareLiteral, o.Searches); err == nil {
			rows = append(rows, row{engine, fmt.Sprintf("search rare (%s) with %d of %d lines not yet indexed, %d matches p50/p99", rareLiteral, lag, total, n),
				ms(p50) + " / " + ms(p99), ""})
		}
		if _, err := awaitLogIndex(ctx, cp); err != nil {
			return rows, err
		}
		rows = append(rows, row{engine, fmt.Sprintf("search index caught up after ingest (%d lines), seconds", lag),
			fmt.Sprintf("%.1f", time.Since(start).Seconds()), ""})
	}
	if seed := o.SearchLines - total; seed > 0 {
		fmt.Fprintf(stderr, "bench logs: %s: seeding %d lines for the search rows…\n", engine, seed)
		took, err := seedLogLines(ctx, cp, c, owner, o, seed, stderr)
		if err != nil {
			return rows, err
		}
		rows = append(rows, row{engine, fmt.Sprintf("seeded for search: %d lines by bulk store writes (not the API; not an ingest figure), lines/s", seed),
			fmt.Sprintf("%.0f", float64(seed)/took.Seconds()), ""})
		total += seed
		if _, err := awaitLogIndex(ctx, cp); err != nil {
			return rows, err
		}
	}
	fmt.Fprintf(stderr, "bench logs: %s: %d lines stored, searching…\n", engine, total)
	sgoal := map[string]string{"clickhouse": "p50 < 300 ms"}[engine]
	for _, q := range []struct{ name, pattern string }{
		{"common", `error: .*timeout`},
		{"rare", rareLiteral},
		{"no literal", `^(?i)E.*T$`},
	} {
		p50, p99, n, err := benchSearch(ctx, owner, q.pattern, o.Searches)
		var ae *apiclient.Error
		if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
			// Past the server's bound on a search's time: what a user
			// gets, so a row, not a failure.
			rows = append(rows, row{engine, fmt.Sprintf("search %s (%s) over %d lines", q.name, q.pattern, total),
				"refused: over the search time bound", sgoal})
			continue
		}
		if err != nil {
			return rows, fmt.Errorf("search %q: %w", q.pattern, err)
		}
		rows = append(rows, row{engine, fmt.Sprintf("search %s (%s) over %d lines, %d matches p50/p99", q.name, q.pattern, total, n),
			ms(p50) + " / " + ms(p99), sgoal})
	}
	if !o.NoSandbox {
		p50, p99, err := benchTail(ctx, url, owner, o, dir)
		if err != nil {
			return rows, fmt.Errorf("tail: %w", err)
		}
		rows = append(rows, row{engine, "live tail: sandbox → SSE client p50 / p99", ms(p50) + " / " + ms(p99), "p99 < 250 ms"})
	}
	return rows, nil
}

// benchIngest streams o.Lines lines from each of o.Jobs leased jobs at
// once, through the agent API as agents send them (uploads of up to
// 512 KiB in the binary form, one at a time per job, again after a 429),
// and returns the lines acknowledged per second.
func benchIngest(ctx context.Context, url string, owner *apiclient.Client, o LogsOptions) (float64, int, error) {
	agent, err := enroll(ctx, url, owner, "bench-logs", []string{"linux"})
	if err != nil {
		return 0, 0, err
	}
	var leases []*apiv1.Lease
	for range o.Jobs {
		if _, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}, Labels: []string{"linux"}}); err != nil {
			return 0, 0, err
		}
		l, err := agent.Lease(ctx, 0)
		if err != nil || l == nil {
			return 0, 0, fmt.Errorf("lease: %v", err)
		}
		leases = append(leases, l)
	}
	// Each job's output, cut as the agent cuts it: 64 KiB chunks.
	outputs := make([][]apiv1.LogChunk, len(leases))
	for j := range leases {
		var buf bytes.Buffer
		var chunks []apiv1.LogChunk
		for i := range o.Lines {
			if i%1000 == 999 {
				fmt.Fprintf(&buf, "job %d line %d: error: connect to 10.0.0.%d:443 timeout after 30s\n", j, i, i%250)
			} else {
				fmt.Fprintf(&buf, "job %d line %d: compiling src/module_%04d/file.go (%d of %d)\n", j, i, i%9999, i, o.Lines)
			}
			if buf.Len() >= 64<<10 {
				chunks = append(chunks, apiv1.LogChunk{Seq: int64(len(chunks)), Data: bytes.Clone(buf.Bytes())})
				buf.Reset()
			}
		}
		if buf.Len() > 0 {
			chunks = append(chunks, apiv1.LogChunk{Seq: int64(len(chunks)), Data: bytes.Clone(buf.Bytes())})
		}
		outputs[j] = chunks
	}
	var refused atomic.Int64
	errs := make(chan error, len(leases))
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for j, l := range leases {
		wg.Go(func() {
			chunks := outputs[j]
			for len(chunks) > 0 {
				n := 0
				for size := 0; n < len(chunks) && (n == 0 || size+len(chunks[n].Data) <= 512<<10); n++ {
					size += len(chunks[n].Data)
				}
				var ack apiv1.LogsAck
				body, err := apiclient.LogsBody(apiv1.Logs{Fence: l.Fence, Chunks: chunks[:n], End: n == len(chunks)})
				if err == nil {
					_, err = agent.Do(ctx, "POST", apiv1.PathAgentJob(l.Job.ID, "logs"), body, &ack)
				}
				if apiclient.IsStatus(err, http.StatusTooManyRequests) {
					refused.Add(1)
					time.Sleep(max(apiclient.RetryAfter(err)/10, 10*time.Millisecond))
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for len(chunks) > 0 && chunks[0].Seq <= ack.Seq {
					chunks = chunks[1:]
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, 0, err
	default:
	}
	total := o.Jobs * o.Lines
	return float64(total) / elapsed.Seconds(), total, nil
}

// benchSearch runs a search n times and returns its p50 and p99 and how
// many lines matched.
func benchSearch(ctx context.Context, owner *apiclient.Client, pattern string, n int) (p50, p99 time.Duration, matches int, err error) {
	var lat []time.Duration
	for range n {
		t0 := time.Now()
		res, err := owner.SearchLogs(ctx, apiclient.LogSearchQuery{Pattern: pattern, Since: "1h", Limit: 100})
		if err != nil {
			return 0, 0, 0, err
		}
		lat = append(lat, time.Since(t0))
		matches = 0
		for _, j := range res.Jobs {
			matches += j.Matches
		}
	}
	return percentile(lat, 0.5), percentile(lat, 0.99), matches, nil
}

// benchTail runs a job in bubblewrap that prints the time every 20 ms and
// follows its lines as Server-Sent Events: the latency is the time a line
// arrives minus the time it holds.
func benchTail(ctx context.Context, url string, owner *apiclient.Client, o LogsOptions, dir string) (p50, p99 time.Duration, err error) {
	shared, err := os.MkdirTemp("", "nimbus-bench-work-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(shared)
	os.Chmod(shared, 0o711)
	jt, err := owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"tail"}})
	if err != nil {
		return 0, 0, err
	}
	ac := app.AgentConfig{Server: url, JoinToken: jt.Token, StateDir: filepath.Join(dir, "agent"), WorkDir: filepath.Join(shared, "work"),
		Name: "bench-tail", Labels: []string{"tail"}, MaxJobs: 1, UIDBase: 175000}
	if err := ac.Validate(true); err != nil {
		return 0, 0, err
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	a, err := app.NewAgent(actx, ac, slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, 0, err
	}
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	defer func() { cancel(); <-adone }()
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do date +%%s%%N; i=$((i+1)); sleep 0.02; done`, o.TailLines)
	j, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"sh", "-c", script}, Labels: []string{"tail"}})
	if err != nil {
		return 0, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", url+apiv1.RouteJobLogs.URL(j.ID)+"?format=sse&follow=1", nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+owner.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("tail: %s", resp.Status)
	}
	var lat []time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		now := time.Now()
		var l apiv1.LogLine
		if err := json.Unmarshal([]byte(data), &l); err != nil {
			return 0, 0, err
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(l.Text), 10, 64)
		if err != nil {
			continue
		}
		lat = append(lat, now.Sub(time.Unix(0, ns)))
	}
	if len(lat) < o.TailLines/2 {
		return 0, 0, errors.New("the tail delivered too few lines")
	}
	return percentile(lat, 0.5), percentile(lat, 0.99), nil
}

// awaitLogIndex waits until SQLite's search index holds every line
// stored (at once on other stores).
func awaitLogIndex(ctx context.Context, cp *app.ControlPlane) (time.Duration, error) {
	start := time.Now()
	for {
		lag, err := cp.Store.LogIndexLag(ctx)
		if err != nil || lag == 0 {
			return time.Since(start), err
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
