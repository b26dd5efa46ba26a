package api_test

// Attacks without credentials on the edge limits (issue 16 item 3; the
// threat model's "GitHub Webhook Ingress / DoS: burst -> backlog" row):
// floods of large bodies with a bad signature, slow bodies and many
// connections from one address, each measured by the memory and the
// connections of the server (this process) before and after.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/api"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

func withLimits(l api.EdgeLimits) apptest.Option {
	return func(c *app.ServerConfig) { c.Limits = l }
}

// heapObjects is the bytes of heap objects, live or not yet swept.
func heapObjects() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// rss is this process's resident set (VmRSS).
func rss(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// serverConns counts the established TCP connections whose local port is
// the server's: the connections the server holds open, as the kernel
// sees them.
func serverConns(t *testing.T, h *apptest.Harness) int {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(h.URL, "http://"), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(p)
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "01" {
				n++
			}
		}
	}
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s: still %s after %v", what, state, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clientFrom is an HTTP client whose connections come from a loopback
// address of their own (all of 127/8 is loopback on Linux): another
// client, as the server sees it.
func clientFrom(ip string, keepAlive bool) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: !keepAlive}, Timeout: time.Minute}
}

// filler reads as an endless run of 'a', without allocating.
type filler struct{}

var fillerBlock = bytes.Repeat([]byte{'a'}, 64<<10)

func (filler) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], fillerBlock)
	}
	return n, nil
}

// 14 clients each send three 24 MB webhook bodies at once, with a
// well-formed but wrong signature, while GitHub (another address) keeps
// delivering: the server's heap stays within a small multiple of the
// budget instead of holding every body, the excess is shed with 503/429
// and a JSON body, GitHub's deliveries are all answered, and afterwards
// memory and connections return to where they were.
func TestFloodOfUnauthenticatedBodies(t *testing.T) {
	const budget = 32 << 20
	h := linkedHarness(t, "sqlite", withLimits(api.EdgeLimits{
		OpenBodyBytes: budget, OpenBodyBytesPerClient: 26 << 20, OpenBodyTimeout: 20 * time.Second, MaxConnsPerClient: 64,
	}))
	github := clientFrom("127.0.0.200", true)
	ping := func(id string) error {
		resp, err := githubtest.Deliver(context.Background(), github, h.URL+"/webhooks/github", []byte(h.WebhookSecret), "ping", id, []byte(`{"zen":"hi","hook_id":1}`))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ping %s: %s", id, resp.Status)
		}
		return nil
	}
	if err := ping("warm-up"); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	shed0 := shedBodies(t, h)
	heap0, rss0, conns0 := heapObjects(), rss(t), serverConns(t, h)
	t.Logf("before: heap %d MiB, rss %d MiB, %d connections", heap0>>20, rss0>>20, conns0)

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := heapObjects(); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	attackStart := time.Now()
	var mu sync.Mutex
	outcomes := map[string]int{}
	var wg sync.WaitGroup
	for i := range 14 {
		// Half the attackers share one address; the others have their own.
		ip := "127.0.0.2"
		if i%2 == 1 {
			ip = fmt.Sprintf("127.0.1.%d", i)
		}
		c := clientFrom(ip, false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				req, _ := http.NewRequest("POST", h.URL+"/webhooks/github", io.LimitReader(filler{}, 24<<20))
				req.ContentLength = 24 << 20
				req.Header = githubtest.DeliveryHeaders(nil, "workflow_job", "attack", nil)
				req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
				resp, err := c.Do(req)
				outcome := "connection closed"
				if err == nil {
					var e apiv1.Error
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					outcome = strconv.Itoa(resp.StatusCode)
					if resp.StatusCode == 503 || resp.StatusCode == 429 {
						if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || resp.Header.Get("Retry-After") == "" {
							t.Errorf("shed answer without a JSON error or Retry-After: %s %q", resp.Status, b)
						}
					}
				}
				mu.Lock()
				outcomes[outcome]++
				mu.Unlock()
			}
		}()
	}
	attackDone := make(chan struct{})
	go func() { wg.Wait(); close(attackDone) }()
	pings := 0
	for done := false; !done; pings++ {
		if err := ping("during-" + strconv.Itoa(pings)); err != nil {
			t.Errorf("GitHub's delivery during the flood: %v", err)
		}
		select {
		case <-attackDone:
			done = true
		default:
		}
	}
	close(stop)
	<-sampled
	t.Logf("in %v: outcomes %v; %d deliveries from GitHub answered 200 meanwhile; peak heap %d MiB",
		time.Since(attackStart).Round(time.Millisecond), outcomes, pings, peak.Load()>>20)
	for o := range outcomes {
		if o != "401" && o != "503" && o != "429" && o != "connection closed" {
			t.Errorf("an attack body got %s", o)
		}
	}
	// The server refuses a body it sheds at once and closes the
	// connection while the client still writes it, so a client sees the
	// 503 or 429, or (as the kernel resets the connection) an error:
	// what was shed is counted on the server.
	if shed := shedBodies(t, h) - shed0; shed == 0 {
		t.Errorf("the server shed no body (outcomes %v)", outcomes)
	}
	// A client that waits for 100 Continue before it sends a body always
	// reads the answer: while one of its bodies holds most of its budget,
	// a second is shed at once with 429, a JSON error and Retry-After.
	attack := func(body io.Reader) *http.Request {
		req, _ := http.NewRequest("POST", h.URL+"/webhooks/github", body)
		req.ContentLength = 24 << 20
		req.Header = githubtest.DeliveryHeaders(nil, "workflow_job", "attack", nil)
		req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
		return req
	}
	pr, pw := io.Pipe()
	held := make(chan struct{})
	go func() {
		defer close(held)
		if resp, err := clientFrom("127.0.0.3", false).Do(attack(pr)); err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, 10*time.Second, "the first body charged", func() (bool, string) {
		n := edgeMetric(t, h, "nimbus_http_open_body_bytes")
		return n >= 24<<20, fmt.Sprintf("%.0f bytes charged", n)
	})
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
	patient := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, ExpectContinueTimeout: time.Minute}, Timeout: time.Minute}
	req := attack(io.LimitReader(filler{}, 24<<20))
	req.Header.Set("Expect", "100-continue")
	resp, err := patient.Do(req)
	pw.CloseWithError(errors.New("done"))
	<-held
	if err != nil {
		t.Errorf("a body past the client's budget: %v", err)
	} else {
		var e apiv1.Error
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 429 || json.Unmarshal(b, &e) != nil || e.Error.Code == "" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("a body past the client's budget: %s %q; want 429 with a JSON error and Retry-After", resp.Status, b)
		}
	}
	patient.CloseIdleConnections()
	// Without the budget the 14 bodies in flight alone are 336 MiB.
	if grew := peak.Load() - heap0; grew > 3*budget {
		t.Errorf("heap grew by %d MiB during the flood; want at most %d MiB (3 × the budget)", grew>>20, 3*budget>>20)
	}
	// The resident set is asserted without the race detector, whose
	// shadow memory stays (TestE2EWebhookFloodRSS measures a real server's
	// under any build).
	eventually(t, 20*time.Second, "memory handed back", func() (bool, string) {
		h, r := heapObjects(), rss(t)
		return h-heap0 < 16<<20 && (raceEnabled || r-rss0 < budget), fmt.Sprintf("heap +%d MiB, rss +%d MiB", (h-heap0)>>20, (r-rss0)>>20)
	})
	github.CloseIdleConnections()
	eventually(t, 10*time.Second, "connections closed", func() (bool, string) {
		n := serverConns(t, h)
		return n <= conns0, fmt.Sprintf("%d open (%d before)", n, conns0)
	})
}

// edgeMetric is the sum of the server's metric name over the series
// whose label reason is one of reasons (any, when none is given).
func edgeMetric(t *testing.T, h *apptest.Harness, name string, reasons ...string) float64 {
	t.Helper()
	mfs, err := h.CP.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ok := len(reasons) == 0
			for _, l := range m.GetLabel() {
				ok = ok || l.GetName() == "reason" && slices.Contains(reasons, l.GetValue())
			}
			if ok {
				n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return n
}

// shedBodies is how many request bodies the server has shed for the
// open routes' budgets.
func shedBodies(t *testing.T, h *apptest.Harness) float64 {
	return edgeMetric(t, h, "nimbus_http_shed_total", "open_body_bytes", "client_body_bytes")
}

// rawRequest opens a connection from ip and sends a request's head.
func rawRequest(t *testing.T, h *apptest.Harness, ip, head string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", strings.TrimPrefix(h.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// A body that trickles in (Content-Length 100000, a byte at a time) is
// cut at the open routes' deadline and minimum rate, with 408 and the
// connection closed; a route that answers 401 without reading the body
// does not wait for it either. A body fast enough but too long for the
// open routes' deadline is cut at the deadline. 24 such connections at
// once leave none open behind them.
func TestSlowBodiesAreCut(t *testing.T) {
	h := apptest.Start(t, "sqlite", withLimits(api.EdgeLimits{
		OpenBodyTimeout: 1500 * time.Millisecond, MinBodyRate: 1 << 10, BodyRateGrace: 300 * time.Millisecond, MaxConnsPerClient: 64,
	}))
	conns0 := serverConns(t, h)
	webhookHeaders := "X-GitHub-Event: ping\r\nX-GitHub-Delivery: slow\r\nX-Hub-Signature-256: sha256=" + strings.Repeat("0", 64) + "\r\n"
	type target struct {
		method, path, headers, status string
		// perTick bytes are sent every 200 ms: 1 is far below the
		// minimum rate; 1000 (5 kB/s) is above it, but 100000 bytes would
		// take 20 s, past the open routes' deadline.
		perTick int
	}
	targets := []target{
		{"POST", "/webhooks/github", webhookHeaders, "408", 1},
		{"POST", apiv1.PathAgentEnroll, "Authorization: Bearer nmbj_slowloris\r\n", "408", 1},
		{"POST", "/webhooks/github", webhookHeaders, "408", 1000},
		{"POST", apiv1.PathAgentEnroll, "Authorization: Bearer nmbj_slowloris\r\n", "408", 1000},
		// Authenticated routes answer before reading; the discard of the
		// unread body stops at the same deadline.
		{"POST", "/api/v1/jobs", "", "401", 1},
		{"PUT", "/cache/cas/" + strings.Repeat("0", 64), "", "401", 1},
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 4 * len(targets) {
		tg := targets[i%len(targets)]
		c := rawRequest(t, h, "127.0.0.3", tg.method+" "+tg.path+" HTTP/1.1\r\nHost: nimbus\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"+tg.headers+"\r\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The sender: one byte every 200 ms, until the server hangs up
			// (at most 100 ticks, 20 s). Blanks: a JSON decoder waits on.
			go func() {
				for range 100 {
					if _, err := c.Write([]byte(strings.Repeat(" ", tg.perTick))); err != nil {
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}()
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Errorf("%s: no answer: %v", tg.path, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			if got := strconv.Itoa(resp.StatusCode); got != tg.status {
				t.Errorf("%s: %s, want %s", tg.path, resp.Status, tg.status)
			}
			// Then the server closes the connection.
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
				t.Errorf("%s: connection still open after the answer: %v", tg.path, err)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d slow bodies answered and closed in %v", 4*len(targets), time.Since(start).Round(time.Millisecond))
	eventually(t, 5*time.Second, "connections closed", func() (bool, string) {
		n := serverConns(t, h)
		return n <= conns0, fmt.Sprintf("%d open (%d before)", n, conns0)
	})
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

// One address may keep only so many connections open: the next ones are
// told 429 and closed; other addresses are served meanwhile, and closed
// connections give their places back.
func TestConnectionsPerClientAreCapped(t *testing.T) {
	const cap = 8
	h := apptest.Start(t, "sqlite", withLimits(api.EdgeLimits{MaxConnsPerClient: cap}))
	conns0 := serverConns(t, h)
	var held []net.Conn
	for range cap {
		held = append(held, rawRequest(t, h, "127.0.0.4", ""))
	}
	eventually(t, 5*time.Second, "held connections accepted", func() (bool, string) {
		n := serverConns(t, h)
		return n == conns0+cap, fmt.Sprintf("%d open", n)
	})
	for range 5 {
		c := rawRequest(t, h, "127.0.0.4", "")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("connection over the cap: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), apiv1.CodeTooMany) {
			t.Errorf("connection over the cap: %s %s", resp.Status, b)
		}
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Errorf("connection over the cap left open: %v", err)
		}
	}
	if n := serverConns(t, h); n > conns0+cap {
		t.Errorf("%d connections open, want at most %d", n, conns0+cap)
	}
	other := clientFrom("127.0.0.5", false)
	resp, err := other.Get(h.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("another address: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, c := range held {
		c.Close()
	}
	eventually(t, 5*time.Second, "places given back", func() (bool, string) {
		resp, err := clientFrom("127.0.0.4", false).Get(h.URL + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}
