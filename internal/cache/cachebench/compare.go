package cachebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// server is a cache server the benchmark started as its own process.
type server struct {
	name    string
	cmd     *exec.Cmd
	dir     string
	targets map[string]string // protocol -> target
	token   string
}

// cpu returns the process's user and system CPU time so far.
func (s *server) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// rss returns the process's resident set size in bytes.
func (s *server) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	os.RemoveAll(s.dir)
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startProcess starts bin in its own process group, its output in
// dir/log (never the benchmark's own pipes).
func startProcess(dir, bin string, args ...string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return cmd, nil
}

// waitUntil polls ready every 50 ms for up to a minute.
func waitUntil(what string, cmd *exec.Cmd, dir string, ready func() bool) error {
	deadline := time.Now().Add(time.Minute)
	for !ready() {
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			return fmt.Errorf("%s did not become ready; its log:\n%s", what, tail(string(log), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// startNimbusUp starts `nimbus up` as a user does, on a fresh data dir and
// free ports, and makes a real API token of role ci for the load.
func startNimbusUp(ctx context.Context, bin string) (*server, error) {
	dir, err := os.MkdirTemp("", "nimbus-bench-up-")
	if err != nil {
		return nil, err
	}
	s := &server{name: "nimbus up", dir: dir}
	httpAddr, err1 := freeAddr()
	grpcAddr, err2 := freeAddr()
	if err := errors.Join(err1, err2); err != nil {
		s.stop()
		return nil, err
	}
	s.cmd, err = startProcess(dir, bin, "up", "--data-dir", filepath.Join(dir, "data"), "--listen", httpAddr,
		"--cache-grpc-listen", grpcAddr, "--log-level", "error")
	if err != nil {
		s.stop()
		return nil, err
	}
	url := "http://" + httpAddr
	err = waitUntil("nimbus up", s.cmd, dir, func() bool {
		resp, err := http.Get(url + apiv1.RouteReadyz.Path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		_, terr := os.Stat(filepath.Join(dir, "data", "admin.token"))
		return resp.StatusCode == http.StatusOK && terr == nil
	})
	if err != nil {
		s.stop()
		return nil, err
	}
	owner, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		s.stop()
		return nil, err
	}
	c := apiclient.New(url, strings.TrimSpace(string(owner)))
	tok, err := c.CreateToken(ctx, apiv1.CreateToken{Name: "bench", Role: "ci"})
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("create a ci token: %w", err)
	}
	s.token = tok.Secret
	s.targets = map[string]string{"grpc": "grpc://" + grpcAddr, "http": url + "/cache"}
	return s, nil
}

// startBazelRemote starts bazel-remote on a fresh directory and free
// ports, without authentication (as it is usually run).
func startBazelRemote(bin string) (*server, error) {
	dir, err := os.MkdirTemp("", "nimbus-bench-bazel-remote-")
	if err != nil {
		return nil, err
	}
	s := &server{name: "bazel-remote", dir: dir}
	httpAddr, err1 := freeAddr()
	grpcAddr, err2 := freeAddr()
	if err := errors.Join(err1, err2); err != nil {
		s.stop()
		return nil, err
	}
	s.cmd, err = startProcess(dir, bin, "--dir", filepath.Join(dir, "data"), "--max_size", "20",
		"--http_address", httpAddr, "--grpc_address", grpcAddr)
	if err != nil {
		s.stop()
		return nil, err
	}
	err = waitUntil("bazel-remote", s.cmd, dir, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		s.stop()
		return nil, err
	}
	s.targets = map[string]string{"grpc": "grpc://" + grpcAddr, "http": "http://" + httpAddr}
	return s, nil
}

// pair is one row measured on both servers.
type pair struct {
	protocol string
	name     string
	a, b     result
	cpuA     time.Duration // server CPU per operation (cas-get-4k only)
	cpuB     time.Duration
}

// compare measures every row on a (Nimbus) and b (bazel-remote, nil when
// absent), row by row and protocol by protocol, so both meet the same
// machine load.
func compare(ctx context.Context, a, b *server, o *options, progress io.Writer) ([]pair, error) {
	var out []pair
	want := map[string]bool{}
	for _, n := range strings.Split(o.rows, ",") {
		if n != "" {
			want[n] = true
		}
	}
	for _, proto := range []string{"grpc", "http"} {
		if o.protocol != "" && o.protocol != proto {
			continue
		}
		ca, err := newClient(a.targets[proto], a.token, o.concurrency)
		if err != nil {
			return out, err
		}
		var cb client
		if b != nil {
			if cb, err = newClient(b.targets[proto], b.token, o.concurrency); err != nil {
				ca.Close()
				return out, err
			}
		}
		for _, r := range rows() {
			if len(want) > 0 && !want[r.name] {
				continue
			}
			p := pair{protocol: proto, name: r.name}
			fmt.Fprintf(progress, "%s %s on %s...\n", proto, r.name, a.name)
			o.cpu = a.cpu
			p.a = r.run(ctx, ca, o)
			if p.a.err == errUnsupported {
				continue
			}
			if p.a.ops > 0 {
				p.cpuA = p.a.cpu / time.Duration(p.a.ops)
			}
			if cb != nil {
				fmt.Fprintf(progress, "%s %s on %s...\n", proto, r.name, b.name)
				o.cpu = b.cpu
				p.b = r.run(ctx, cb, o)
				if p.b.ops > 0 {
					p.cpuB = p.b.cpu / time.Duration(p.b.ops)
				}
			}
			o.cpu = nil
			out = append(out, p)
			if ctx.Err() != nil {
				break
			}
		}
		ca.Close()
		if cb != nil {
			cb.Close()
		}
	}
	return out, ctx.Err()
}

// rate is what a row measures: MB/s for the large blob rows, ops/s else.
func rate(r result) (float64, string) {
	secs := r.elapsed.Seconds()
	if secs <= 0 {
		return 0, ""
	}
	if strings.HasSuffix(r.name, "64m") {
		return float64(r.bytes) / secs / 1e6, "MB/s"
	}
	return float64(r.ops) / secs, "ops/s"
}

func printCompare(w io.Writer, a, b *server, ps []pair, rssA, rssB int64) {
	bname := "bazel-remote"
	if b == nil {
		bname = "bazel-remote (absent)"
	}
	fmt.Fprintf(w, "\n%s (real ci token) against %s, the same load in the same run; ratio = Nimbus / bazel-remote, goal ≥ 1.5×\n", a.name, bname)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protocol\trow\tunit\tNimbus\tp99\tbazel-remote\tp99\tratio\tgoal\t")
	for _, p := range ps {
		p.a.name, p.b.name = p.name, p.name
		if p.a.err != nil {
			fmt.Fprintf(tw, "%s\t%s\t\terror: %v\t\t\t\t\t\t\n", p.protocol, p.name, p.a.err)
			continue
		}
		ra, unit := rate(p.a)
		cols := []string{p.protocol, p.name, unit, fmt.Sprintf("%.0f", ra), fmtDur(p.a.p99), "—", "—", "—", ""}
		if unit == "MB/s" {
			cols[3] = fmt.Sprintf("%.0f", ra)
		}
		if b != nil && p.b.err == nil && p.b.ops > 0 {
			rb, _ := rate(p.b)
			ratio := ra / rb
			mark := "✓"
			if ratio < 1.5 {
				mark = "✗"
			}
			cols[5], cols[6], cols[7], cols[8] = fmt.Sprintf("%.0f", rb), fmtDur(p.b.p99), fmt.Sprintf("%.2f×", ratio), mark
		} else if b != nil && p.b.err != nil {
			cols[5] = "error: " + p.b.err.Error()
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	tw.Flush()
	for _, p := range ps {
		if p.name == "cas-get-4k" && p.a.err == nil {
			line := fmt.Sprintf("server CPU per 4 KiB GET over %s: Nimbus %s", p.protocol, fmtDur(p.cpuA))
			if b != nil {
				line += ", bazel-remote " + fmtDur(p.cpuB)
			}
			fmt.Fprintln(w, line+" (goal ≤ 60µs)")
		}
	}
	line := fmt.Sprintf("resident memory after the run: Nimbus %d MB", rssA>>20)
	if b != nil {
		line += fmt.Sprintf(", bazel-remote %d MB", rssB>>20)
	}
	fmt.Fprintln(w, line)
}

// findBazelRemote is the bazel-remote binary to compare with, or "".
func findBazelRemote(o *options) string {
	if o.bazelRemote != "" {
		return o.bazelRemote
	}
	if p := o.getenv("NIMBUS_BAZEL_REMOTE"); p != "" {
		return p
	}
	p, _ := exec.LookPath("bazel-remote")
	return p
}

// compareMain is the default run: `nimbus up` against bazel-remote.
func compareMain(ctx context.Context, o *options, stdout, stderr io.Writer) int {
	bin := o.nimbus
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "find this nimbus binary: %v (give --nimbus)\n", err)
			return 1
		}
	}
	a, err := startNimbusUp(ctx, bin)
	if err != nil {
		fmt.Fprintf(stderr, "start nimbus up: %v\n", err)
		return 1
	}
	defer a.stop()
	fmt.Fprintf(stderr, "nimbus up (%s) serving %s and %s\n", bin, a.targets["grpc"], a.targets["http"])
	var b *server
	if br := findBazelRemote(o); br == "" {
		fmt.Fprintln(stderr, "bazel-remote not found (give --bazel-remote PATH or set NIMBUS_BAZEL_REMOTE): measuring Nimbus alone, no ratios")
	} else if b, err = startBazelRemote(br); err != nil {
		fmt.Fprintf(stderr, "start bazel-remote (%s): %v\n", br, err)
		return 1
	} else {
		defer b.stop()
		fmt.Fprintf(stderr, "bazel-remote (%s) serving %s and %s\n", br, b.targets["grpc"], b.targets["http"])
	}
	ps, err := compare(ctx, a, b, o, stderr)
	var rssB int64
	if b != nil {
		rssB = b.rss()
	}
	printCompare(stdout, a, b, ps, a.rss(), rssB)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	code := 0
	for _, p := range ps {
		if p.a.err != nil || (b != nil && p.b.err != nil) {
			code = 1
		}
	}
	if o.actionsSize > 0 && (o.protocol == "" || o.protocol == "http") {
		rs, err := runActions(ctx, a, o, stderr)
		if err != nil {
			fmt.Fprintf(stdout, "\nActions cache rows skipped: %v\n", err)
		} else {
			fmt.Fprintf(stdout, "\nActions cache through %s with the real @actions/cache client, end to end (tar, zstd, transfer); goal: restore ≥ 500 MB/s\n", a.name)
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "row\tMB/s\ttime\t")
			for _, r := range rs {
				if r.err != nil {
					fmt.Fprintf(tw, "%s\terror: %v\t\t\n", r.name, r.err)
					code = 1
					continue
				}
				fmt.Fprintf(tw, "%s\t%.0f\t%s\t\n", r.name, float64(r.bytes)/r.elapsed.Seconds()/1e6, fmtDur(r.elapsed))
			}
			tw.Flush()
		}
	}
	return code
}
