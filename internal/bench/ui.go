package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/websession"
)

// UIOptions configures `nimbus bench ui`.
type UIOptions struct {
	Jobs     int
	LogLines int
	Live     int
	Idle     time.Duration
	Runs     int
	// Nimbus is the binary started as `nimbus up` (default: this one).
	Nimbus string
	// BrowserDir holds bench.mjs and playwright-core (the dashboard's
	// browser tests); empty or missing: no browser rows.
	BrowserDir string
	Chromium   string
}

// UIMain is `nimbus bench ui`.
func UIMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o UIOptions
	fs := flag.NewFlagSet("nimbus bench ui", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.Jobs, "jobs", 10000, "jobs in the org")
	fs.IntVar(&o.LogLines, "log-lines", 200000, "lines of the long job log")
	fs.IntVar(&o.Live, "live", 100, "live pages held open for the idle cost")
	fs.DurationVar(&o.Idle, "idle", 30*time.Second, "how long the idle cost is measured (without, then with the live pages)")
	fs.IntVar(&o.Runs, "runs", 5, "measured runs of each page")
	fs.StringVar(&o.Nimbus, "nimbus", "", "the nimbus binary to start as nimbus up (default: this one)")
	fs.StringVar(&o.BrowserDir, "browser-dir", "internal/dashboard/testdata/browser", "directory of bench.mjs with playwright-core installed (npm ci; the default is relative to the repository's root); the browser rows need it and Chromium")
	fs.StringVar(&o.Chromium, "chromium", "chromium", "the Chromium binary")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: nimbus bench ui [flags]

Measures the web dashboard on this machine against the server as users run
it: `+"`nimbus up`"+` started as its own process on a fresh data dir (SQLite, free
ports; --org-job-rate 0 so the seeded jobs are not deferred, --lease-ttl 10m
so the long log's upload needs no lease renewals), seeded through
the API with -jobs queued jobs and one finished job whose log has -log-lines
lines. It prints: the jobs page and the log as the server answers them; the
same pages in headless Chromium (the jobs page's first contentful paint; the
log until its first rows show and until it is whole and scrollable) when
Chromium and playwright-core are there; and the server process's CPU,
resident memory, Go heap and goroutines while idle, without and then with
-live live jobs pages open (half of them filtered to queued jobs).
The browser signs in with a session written to the database as a sign-in
writes it (the benchmark runs on the server's host).

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nimbus bench ui: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.Jobs < 1 || o.LogLines < 1 || o.Live < 0 || o.Runs < 1 || o.Idle <= 0 {
		fmt.Fprintln(stderr, "nimbus bench ui: -jobs, -log-lines and -runs must be at least 1, -live not negative, -idle positive")
		return 2
	}
	if o.Nimbus == "" {
		var err error
		if o.Nimbus, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "nimbus bench ui: find this nimbus binary: %v (give -nimbus)\n", err)
			return 1
		}
	}
	if err := runUI(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "nimbus bench ui: %v\n", err)
		return 1
	}
	return 0
}

type uiBench struct {
	o      UIOptions
	up     *upProcess
	url    string
	owner  string // the owner token's secret
	cookie *http.Cookie
	logJob string
}

func runUI(ctx context.Context, o UIOptions, stdout, stderr io.Writer) error {
	up, err := startUp(ctx, o.Nimbus)
	if err != nil {
		return fmt.Errorf("start nimbus up: %w", err)
	}
	defer up.stop()
	b := &uiBench{o: o, up: up, url: up.url, owner: up.owner}
	fmt.Fprintf(stderr, "nimbus up (%s, pid %d) on %s; seeding %d jobs and a %d-line log…\n", o.Nimbus, up.cmd.Process.Pid, up.url, o.Jobs, o.LogLines)
	if err := b.signIn(ctx); err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	if err := b.seed(ctx); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tmeasured\tgoal")
	row := func(m, v, g string) { fmt.Fprintf(tw, "%s\t%s\t%s\n", m, v, g) }

	jobsPage, _, err := b.timeGET(ctx, "/ui/jobs", o.Runs*4)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("jobs page (%d jobs), server answer, p50 / p95", o.Jobs), fmt.Sprintf("%s / %s", ms(pct(jobsPage, 50)), ms(pct(jobsPage, 95))), "")
	raw, size, err := b.timeGET(ctx, "/ui/jobs/"+b.logJob+"/log.txt", o.Runs)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("%d-line log (%s), raw download, p50", o.LogLines, mib(size)), ms(pct(raw, 50)), "")
	stream, err := b.timeLogStream(ctx, o.Runs)
	if err != nil {
		return err
	}
	row(fmt.Sprintf("%d-line log, live stream to its end, p50", o.LogLines), ms(pct(stream, 50)), "")

	if res, why := b.browser(ctx, stderr); res != nil {
		row("jobs page in Chromium: first contentful paint, p50 / max", fmt.Sprintf("%s / %s", ms(msDur(pct(res["jobs_fcp"], 50))), ms(msDur(pct(res["jobs_fcp"], 100)))), "< 300 ms")
		row("jobs page in Chromium: load event, p50", ms(msDur(pct(res["jobs_load"], 50))), "")
		row("a one-line page in Chromium (no server): first contentful paint, p50", ms(msDur(pct(res["floor_fcp"], 50))), "")
		row(fmt.Sprintf("%d-line log in Chromium: first rows, p50", o.LogLines), ms(msDur(pct(res["log_first_rows"], 50))), "")
		row(fmt.Sprintf("%d-line log in Chromium: whole and scrollable, p50 / max", o.LogLines), fmt.Sprintf("%s / %s", ms(msDur(pct(res["log_usable"], 50))), ms(msDur(pct(res["log_usable"], 100)))), "< 1 s")
	} else {
		row("browser rows", "skipped: "+why, "")
	}

	fmt.Fprintf(stderr, "idle cost: %s without live pages, then %s with %d…\n", o.Idle, o.Idle, o.Live)
	idle, err := b.idleCost(ctx, 0)
	if err != nil {
		return err
	}
	live, err := b.idleCost(ctx, o.Live)
	if err != nil {
		return err
	}
	row("server idle, no live pages: CPU", fmt.Sprintf("%.2f%% of one core", idle.cpu), "")
	row(fmt.Sprintf("server idle, %d live pages: CPU", o.Live), fmt.Sprintf("%.2f%% of one core (+%.2f)", live.cpu, live.cpu-idle.cpu), "< 5%")
	row(fmt.Sprintf("server resident memory, no live pages / %d", o.Live), fmt.Sprintf("%s / %s", mib(idle.rss), mib(live.rss)), "")
	row(fmt.Sprintf("server Go heap in use, no live pages / %d", o.Live), fmt.Sprintf("%s / %s", mib(idle.heap), mib(live.heap)), "")
	row(fmt.Sprintf("server goroutines, no live pages / %d", o.Live), fmt.Sprintf("%d / %d", idle.goroutines, live.goroutines), "")
	return tw.Flush()
}

// upProcess is `nimbus up` started as its own process.
type upProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
	dir    string
	data   string
	url    string
	owner  string
}

// startUp starts `nimbus up` as a user does, on a fresh data dir and a
// free port, its output in dir/log (never the benchmark's pipes).
func startUp(ctx context.Context, bin string) (*upProcess, error) {
	dir, err := os.MkdirTemp("", "nimbus-bench-ui-")
	if err != nil {
		return nil, err
	}
	u := &upProcess{dir: dir, data: filepath.Join(dir, "data")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		u.stop()
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		u.stop()
		return nil, err
	}
	defer logf.Close()
	u.cmd = exec.Command(bin, "up", "--data-dir", u.data, "--listen", addr, "--cache-grpc-listen", "",
		"--log-level", "error", "--org-job-rate", "0", "--lease-ttl", "10m")
	u.cmd.Stdout, u.cmd.Stderr = logf, logf
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := u.cmd.Start(); err != nil {
		u.stop()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	u.exited = make(chan struct{})
	go func() { u.cmd.Wait(); close(u.exited) }()
	u.url = "http://" + addr
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(u.url + apiv1.RouteReadyz.Path)
		if err == nil {
			resp.Body.Close()
			tok, terr := os.ReadFile(filepath.Join(u.data, "admin.token"))
			if resp.StatusCode == http.StatusOK && terr == nil {
				u.owner = strings.TrimSpace(string(tok))
				return u, nil
			}
		}
		select {
		case <-u.exited:
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		u.stop()
		if len(log) > 2000 {
			log = log[len(log)-2000:]
		}
		return nil, fmt.Errorf("nimbus up did not become ready; its log:\n%s", log)
	}
}

// stop ends the server (SIGTERM to its process group; SIGKILL after 15 s)
// and removes its directory.
func (u *upProcess) stop() {
	if u.exited != nil {
		syscall.Kill(-u.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-u.exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
			<-u.exited
		}
	}
	os.RemoveAll(u.dir)
}

// usage is the process's CPU time so far and its resident memory.
func (u *upProcess) usage() (cpu time.Duration, rss int64) {
	pid := u.cmd.Process.Pid
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// The fields after the command name (in parentheses).
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				rss = kb << 10
			}
		}
	}
	return cpu, rss
}

// signIn writes an owner's dashboard session for the default org into
// the server's database, as the sign-in callback writes one (the
// benchmark has no OpenID Provider; it runs on the server's host, as
// `nimbus admin` does).
func (b *uiBench) signIn(ctx context.Context) error {
	st, err := sqlstore.Open(ctx, filepath.Join(b.up.data, "nimbus.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	who, err := apiclient.New(b.url, b.owner).Whoami(ctx)
	if err != nil {
		return err
	}
	key := make([]byte, 32) // for CSRF tokens, which the benchmark does not use
	m, err := websession.New(st.WebSessions(), websession.DefaultConfig(), key, nil)
	if err != nil {
		return err
	}
	rec := httptest.NewRecorder()
	if _, err := m.Start(ctx, rec, websession.Identity{Provider: "bench", Subject: "bench", Email: "bench@example.com"},
		[]websession.OrgRole{{Org: who.Org, Role: auth.RoleOwner}}, who.Org, time.Now()); err != nil {
		return err
	}
	b.cookie = rec.Result().Cookies()[0]
	return nil
}

// seed makes the long log's job (leased by an agent of its own label,
// its output uploaded, finished) and then the other jobs, queued with
// labels no agent offers (the local agent takes none of them).
func (b *uiBench) seed(ctx context.Context) error {
	owner := apiclient.New(b.url, b.owner)
	j, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"make", "everything"}, Labels: []string{"bench-log"}})
	if err != nil {
		return err
	}
	b.logJob = j.ID
	jt, err := owner.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"bench-log"}})
	if err != nil {
		return err
	}
	en, err := apiclient.New(b.url, jt.Token).Enroll(ctx, apiv1.Enroll{Name: "bench", MaxJobs: 1})
	if err != nil {
		return err
	}
	agent := apiclient.New(b.url, en.Credential)
	if _, err := agent.Register(ctx, apiv1.Register{Labels: []string{"bench-log"}, MaxJobs: 1}); err != nil {
		return err
	}
	l, err := agent.Lease(ctx, 5)
	if err != nil || l == nil || l.Job.ID != j.ID {
		return fmt.Errorf("lease the log's job: %v", err)
	}
	if _, err := agent.StartJob(ctx, j.ID, l.Fence); err != nil {
		return err
	}
	var buf bytes.Buffer
	seq := int64(0)
	flush := func() error {
		if buf.Len() == 0 {
			return nil
		}
		_, err := agent.AppendLogs(ctx, j.ID, apiv1.Logs{Fence: l.Fence, Chunks: []apiv1.LogChunk{{Seq: seq, Data: bytes.Clone(buf.Bytes())}}})
		seq++
		buf.Reset()
		return err
	}
	for i := 1; i <= b.o.LogLines; i++ {
		switch {
		case i%5000 == 1:
			fmt.Fprintf(&buf, "::group::step %d\n", i/5000+1)
		case i%5000 == 0:
			buf.WriteString("::endgroup::\n")
		case i%97 == 0:
			fmt.Fprintf(&buf, "\x1b[32mPASS\x1b[0m //pkg/%d:test (%d.%03ds)\n", i, i%7, i%1000)
		default:
			fmt.Fprintf(&buf, "[%6d] compiling src/module_%d/file_%d.go with some flags -O2 -Wall\n", i, i%311, i%17)
		}
		if buf.Len() >= 256<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	code := 0
	if _, err := agent.CompleteJob(ctx, j.ID, apiv1.Complete{Fence: l.Fence, State: "succeeded", ExitCode: &code}); err != nil {
		return err
	}
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	n := b.o.Jobs - 1
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if _, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"echo", strconv.Itoa(i)},
					Labels: []string{"bench", []string{"x64", "arm64", "gpu"}[i%3]}}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (b *uiBench) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", b.url+path, nil)
	if err != nil {
		return nil, err
	}
	req.AddCookie(b.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err == nil && resp.StatusCode != 200 {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d", path, resp.StatusCode)
	}
	return resp, err
}

// timeGET times n complete answers of a page (after one warm-up) and
// returns the size of the last.
func (b *uiBench) timeGET(ctx context.Context, path string, n int) ([]time.Duration, int64, error) {
	var out []time.Duration
	var size int64
	for i := 0; i <= n; i++ {
		t0 := time.Now()
		resp, err := b.get(ctx, path)
		if err != nil {
			return nil, 0, err
		}
		size, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, 0, err
		}
		if i > 0 {
			out = append(out, time.Since(t0))
		}
	}
	return out, size, nil
}

// timeLogStream times reading the long log's live stream (what a page
// of a running job reads) to its end event.
func (b *uiBench) timeLogStream(ctx context.Context, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i <= n; i++ {
		t0 := time.Now()
		resp, err := b.get(ctx, "/ui/jobs/"+b.logJob+"/log")
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		ended := false
		for !ended && sc.Scan() {
			ended = sc.Text() == "event: end"
		}
		resp.Body.Close()
		if !ended {
			return nil, fmt.Errorf("the log stream ended without its end event: %v", sc.Err())
		}
		if i > 0 {
			out = append(out, time.Since(t0))
		}
	}
	return out, nil
}

// browser runs bench.mjs; nil and why when it cannot.
func (b *uiBench) browser(ctx context.Context, stderr io.Writer) (map[string][]float64, string) {
	chromium, err := exec.LookPath(b.o.Chromium)
	if err != nil {
		return nil, "no Chromium (apt-get install chromium)"
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "no node"
	}
	if _, err := os.Stat(filepath.Join(b.o.BrowserDir, "node_modules", "playwright-core")); err != nil {
		return nil, "no playwright-core in " + b.o.BrowserDir + " (npm ci there, or set -browser-dir)"
	}
	cmd := exec.CommandContext(ctx, node, "bench.mjs")
	cmd.Dir = b.o.BrowserDir
	cmd.Env = append(os.Environ(), "NIMBUS_URL="+b.url, "COOKIE_NAME="+b.cookie.Name, "COOKIE="+b.cookie.Value, "JOB_ID="+b.logJob,
		"CHROMIUM="+chromium, "RUNS="+strconv.Itoa(b.o.Runs))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Sprintf("bench.mjs: %v", err)
	}
	res := map[string]any{}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		return nil, fmt.Sprintf("bench.mjs said %q", out.String())
	}
	if n, _ := res["log_lines"].(float64); int(n) != b.o.LogLines {
		return nil, fmt.Sprintf("the browser's log had %v lines, not %d", res["log_lines"], b.o.LogLines)
	}
	m := map[string][]float64{}
	for k, v := range res {
		if l, ok := v.([]any); ok {
			for _, x := range l {
				f, _ := x.(float64)
				m[k] = append(m[k], f)
			}
		}
	}
	return m, ""
}

type idleUsage struct {
	cpu        float64 // % of one core
	rss        int64
	heap       int64 // the Go heap in use (go_memstats_heap_inuse_bytes)
	goroutines int64
}

// metrics reads the server's Go heap in use and goroutines from its
// /metrics (served on --listen without TLS).
func (b *uiBench) metrics(ctx context.Context) (heap, goroutines int64, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", b.url+apiv1.RouteMetrics.Path, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, perr := strconv.ParseFloat(v, 64)
		switch name {
		case "go_memstats_heap_inuse_bytes":
			heap = int64(f)
		case "go_goroutines":
			goroutines = int64(f)
		default:
			continue
		}
		if perr != nil {
			return 0, 0, fmt.Errorf("/metrics: %s: %w", name, perr)
		}
	}
	return heap, goroutines, sc.Err()
}

// idleCost opens n live pages (the jobs list's stream, as n browsers
// would; half of them filtered) and measures the server process's CPU
// and memory while nothing happens.
func (b *uiBench) idleCost(ctx context.Context, n int) (idleUsage, error) {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	ready := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/ui/jobs/live"
			if i%2 == 1 {
				path = "/ui/jobs/live?state=queued"
			}
			resp, err := b.get(lctx, path)
			if err != nil {
				ready <- err
				return
			}
			defer resp.Body.Close()
			r := bufio.NewReader(resp.Body)
			sent := false
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					if !sent {
						ready <- fmt.Errorf("live page ended before its first rows: %w", err)
					}
					return
				}
				if !sent && line == "\n" { // the end of the first event
					ready <- nil
					sent = true
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-ready; err != nil {
			return idleUsage{}, err
		}
	}
	c0, _ := b.up.usage()
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return idleUsage{}, ctx.Err()
	case <-time.After(b.o.Idle):
	}
	c1, rss := b.up.usage()
	wall := time.Since(t0)
	heap, gs, err := b.metrics(ctx)
	if err != nil {
		return idleUsage{}, err
	}
	return idleUsage{cpu: 100 * (c1 - c0).Seconds() / wall.Seconds(), rss: rss, heap: heap, goroutines: gs}, nil
}

func pct[T time.Duration | float64](v []T, p int) T {
	if len(v) == 0 {
		return 0
	}
	s := append([]T(nil), v...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func msDur(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
