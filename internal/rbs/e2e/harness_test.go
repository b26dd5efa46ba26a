package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/proxy"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
	"github.com/nimbus-build/nimbus/internal/sessions/sessionstest"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

const roleEnv = "NIMBUS_RBS_E2E_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "proxy":
		os.Exit(proxy.Main(os.Args[1:]))
	case "agent":
		os.Exit(agentMain())
	}
	os.Exit(m.Run())
}

// requireTools skips (or, with CI=true, fails) when the test cannot run here.
func requireTools(t *testing.T) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"bazel", "bwrap", "ip", "java"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/usr/share/bazel/A-server.jar"); err != nil {
		missing = append(missing, "/usr/share/bazel (bazel-bootstrap)")
	}
	msg := ""
	if len(missing) > 0 {
		msg = "missing " + strings.Join(missing, ", ") + " (apt-get install bazel-bootstrap bubblewrap iproute2 default-jdk-headless)"
	} else if os.Geteuid() != 0 {
		msg = "needs root (network namespaces, sandbox uids)"
	}
	if msg == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// ---- the agent process ----

type agentConfig struct {
	Storage  string
	Listen   string
	CertPEM  string
	KeyPEM   string
	CAPEM    string
	UIDFirst int
	UIDCount int
}

type agentRequest struct {
	Op   string // start, stop, sessions
	Spec *server.SessionSpec
	ID   string
}

type agentResponse struct {
	Error      string
	Endpoint   *server.Endpoint
	Sessions   []server.SessionInfo
	InstallMD5 string
	Addr       string
}

// agentMain hosts a server.Host and obeys JSON requests on stdin until it
// closes; then it stops every session and exits.
func agentMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var cfg agentConfig
	if err := json.Unmarshal([]byte(os.Getenv("NIMBUS_RBS_E2E_AGENT")), &cfg); err != nil {
		log.Error("config", "err", err)
		return 2
	}
	cert, err := tls.X509KeyPair([]byte(cfg.CertPEM), []byte(cfg.KeyPEM))
	if err != nil {
		log.Error("cert", "err", err)
		return 2
	}
	roots, err := pki.PoolFromPEM([]byte(cfg.CAPEM))
	if err != nil {
		log.Error("ca", "err", err)
		return 2
	}
	// The agent's own sandbox and networks, as `nimbus agent` builds them:
	// each session in its own network namespace (offline), under the
	// jobs' bubblewrap sandbox with its uids.
	bz, err := server.Bazel{}.Resolve()
	if err != nil {
		log.Error("bazel", "err", err)
		return 2
	}
	ex, err := bwrap.New(bwrap.Options{WorkRoot: filepath.Join(filepath.Dir(cfg.Storage), "work"), UIDBase: cfg.UIDFirst,
		Etc: append(slices.Clone(bwrap.DefaultEtc), bz.EtcEntries()...), Logger: log})
	if err != nil {
		log.Error("executor", "err", err)
		return 2
	}
	networks, err := netpolicy.NewManager(netpolicy.Config{Subnet4: netip.MustParsePrefix("10.215.0.0/16"),
		Upstream: []string{"127.0.0.1:53"}, Logger: log})
	if err != nil {
		log.Error("networks", "err", err)
		return 2
	}
	h, err := server.NewHost(server.Options{
		StorageRoot: cfg.Storage, Listen: cfg.Listen, Certificate: cert, Roots: roots,
		UIDs: server.UIDRange{First: cfg.UIDFirst, Count: cfg.UIDCount}, Logger: log,
		Executor: ex, Networks: networks, Limits: executor.Limits{Memory: 2 << 30, Pids: 4096},
	})
	if err != nil {
		log.Error("host", "err", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- h.Serve(ctx) }()
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(agentResponse{InstallMD5: h.InstallMD5(), Addr: h.Addr()})
	dec := json.NewDecoder(os.Stdin)
	for {
		var req agentRequest
		if err := dec.Decode(&req); err != nil {
			break
		}
		var resp agentResponse
		switch req.Op {
		case "start":
			ep, err := h.StartSession(ctx, *req.Spec)
			if err != nil {
				resp.Error = err.Error()
			} else {
				resp.Endpoint = &ep
			}
		case "stop":
			if err := h.StopSession(ctx, req.ID); err != nil {
				resp.Error = err.Error()
			}
		case "sessions":
			resp.Sessions = h.Sessions()
		default:
			resp.Error = "unknown op " + req.Op
		}
		enc.Encode(resp)
	}
	cancel()
	<-served
	return 0
}

// agentProc is the test's handle on the agent process; it implements
// sessionapi.Agent over the process's stdin and stdout.
type agentProc struct {
	cmd        *exec.Cmd
	mu         sync.Mutex
	in         io.WriteCloser
	out        *json.Decoder
	installMD5 string
	addr       string
	stderr     *testenv.Buffer
}

var _ sessionstest.Host = (*agentProc)(nil)

func (a *agentProc) call(req agentRequest) (agentResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := json.NewEncoder(a.in).Encode(req); err != nil {
		return agentResponse{}, err
	}
	var resp agentResponse
	if err := a.out.Decode(&resp); err != nil {
		return resp, fmt.Errorf("agent: %w", err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

func (a *agentProc) StartSession(_ context.Context, spec server.SessionSpec) (server.Endpoint, error) {
	resp, err := a.call(agentRequest{Op: "start", Spec: &spec})
	if err != nil {
		if strings.Contains(err.Error(), server.ErrNoCapacity.Error()) {
			return server.Endpoint{}, fmt.Errorf("%w (%v)", server.ErrNoCapacity, err)
		}
		return server.Endpoint{}, err
	}
	return *resp.Endpoint, nil
}

func (a *agentProc) StopSession(_ context.Context, id string) error {
	_, err := a.call(agentRequest{Op: "stop", ID: id})
	return err
}

func (a *agentProc) sessions(t *testing.T) []server.SessionInfo {
	t.Helper()
	resp, err := a.call(agentRequest{Op: "sessions"})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Sessions
}

// netns is a network namespace joined to the host by a veth pair.
type netns struct {
	name     string
	hostIP   string
	agentIP  string
	hostVeth string
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a namespace and removes it when the test ends.
func newNetns(t *testing.T) *netns {
	t.Helper()
	n := rand.IntN(200) + 20
	id := fmt.Sprintf("%d%04d", os.Getpid()%1000, rand.IntN(10000))
	ns := &netns{
		name:     "nimbus-rbs-" + id,
		hostIP:   fmt.Sprintf("10.214.%d.1", n),
		agentIP:  fmt.Sprintf("10.214.%d.2", n),
		hostVeth: "nrh" + id,
	}
	agentVeth := "nra" + id
	run(t, "ip", "netns", "add", ns.name)
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", ns.hostVeth).Run()
		if out, err := exec.Command("ip", "netns", "del", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns.name, err, out)
		}
	})
	run(t, "ip", "link", "add", ns.hostVeth, "type", "veth", "peer", "name", agentVeth)
	run(t, "ip", "link", "set", agentVeth, "netns", ns.name)
	run(t, "ip", "addr", "add", ns.hostIP+"/30", "dev", ns.hostVeth)
	run(t, "ip", "link", "set", ns.hostVeth, "up")
	run(t, "ip", "netns", "exec", ns.name, "ip", "addr", "add", ns.agentIP+"/30", "dev", agentVeth)
	run(t, "ip", "netns", "exec", ns.name, "ip", "link", "set", agentVeth, "up")
	run(t, "ip", "netns", "exec", ns.name, "ip", "link", "set", "lo", "up")
	return ns
}

// startAgent runs the agent process in ns with its own storage.
func startAgent(t *testing.T, ns *netns, ca *pki.CA, storage string) *agentProc {
	t.Helper()
	cert, err := ca.Issue(pki.AgentIdentity("acme", "agent-1"), pki.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	cfg, _ := json.Marshal(agentConfig{
		Storage: storage, Listen: ns.agentIP + ":0",
		CertPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})),
		KeyPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		CAPEM:    string(ca.CertPEM()),
		UIDFirst: 61000 + rand.IntN(100)*10, UIDCount: 3,
	})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// nsenter, not `ip netns exec`: that one remounts /sys, hiding the
	// cgroup hierarchies the sandbox needs.
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns.name, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=agent", "NIMBUS_RBS_E2E_AGENT="+string(cfg))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	a := &agentProc{cmd: cmd, stderr: &testenv.Buffer{}}
	cmd.Stderr = a.stderr
	if a.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.out = json.NewDecoder(bufio.NewReader(stdout))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent exited: %v", err)
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("agent did not stop in time")
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", a.stderr.String())
		}
		// Every Bazel server the agent started must be gone with it.
		if procs := processesMentioning(storage); len(procs) > 0 {
			t.Errorf("processes left running: %v", procs)
		}
	})
	var hello agentResponse
	if err := a.out.Decode(&hello); err != nil {
		t.Fatalf("agent did not start: %v\n%s", err, a.stderr.String())
	}
	a.installMD5, a.addr = hello.InstallMD5, hello.Addr
	return a
}

// processesMentioning lists the command lines of processes whose arguments
// contain s.
func processesMentioning(s string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return out
}

// controlPlane is the sessions API over TLS in front of the real broker
// (internal/sessions over SQLite); the agent process is driven from the
// broker's orders as a real agent's sessions loop does.
type controlPlane struct {
	url     string
	caFile  string
	cluster *sessionstest.Cluster
}

func startControlPlane(t *testing.T, ca *pki.CA, dir string, agent *agentProc, tokens map[string]auth.Principal) *controlPlane {
	t.Helper()
	c := sessionstest.Start(t, ca, "acme", sessionstest.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c.AddAgent(t, "agent-1", store.AgentRBS{Address: agent.addr, InstallMD5s: []string{agent.installMD5}, MaxSessions: 3}, agent)
	srv := httptest.NewUnstartedServer(sessionstest.Auth(tokens, sessionapi.Handler(c.Broker, slog.New(slog.DiscardHandler))))
	cert, err := ca.Issue(pki.Identity{Org: "acme", Kind: pki.KindServer, Name: "control-plane"}, pki.IssueOptions{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &controlPlane{url: srv.URL, caFile: caFile, cluster: c}
}

// developer is a user with a workspace, a javabase and credentials.
type developer struct {
	name      string
	dir       string
	workspace string
	outRoot   string
	home      string
}

// newDeveloper writes the workspace files, the credentials and the
// javabase, and a .bazelrc pointing at it.
func newDeveloper(t *testing.T, root, name, token string, cp *controlPlane, files map[string]string) *developer {
	t.Helper()
	d := &developer{name: name, dir: filepath.Join(root, name)}
	d.workspace = filepath.Join(d.dir, "ws")
	d.outRoot = filepath.Join(d.dir, "out")
	d.home = filepath.Join(d.dir, "home")
	for _, p := range []string{d.workspace, d.home} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for rel, content := range files {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(rel, ".sh") {
			mode = 0o755
		}
		writeFile(t, filepath.Join(d.workspace, rel), content, mode)
	}
	creds := filepath.Join(d.dir, "credentials.json")
	writeFile(t, creds, fmt.Sprintf(`{"token": %q}`, token), 0o600)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	javabase := filepath.Join(d.dir, "javabase")
	cfg := rbs.ProxyConfig{Server: cp.url, Credentials: creds, CAFile: cp.caFile}
	if err := rbs.WriteJavabase(javabase, []string{"/usr/bin/env", roleEnv + "=proxy", exe}, cfg); err != nil {
		t.Fatal(err)
	}
	if err := rbs.AddToBazelrc(d.workspace, javabase); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(d.workspace, ".bazelrc"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// max_idle_secs: a backstop should a test die without cleaning up.
	fmt.Fprintf(f, "startup --output_user_root=%s --max_idle_secs=600\nbuild --curses=no --color=no --show_progress_rate_limit=0.2\n", d.outRoot)
	f.Close()
	t.Cleanup(func() { d.shutdown(t) })
	return d
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// outputBase finds the output base of the workspace (the only one under
// the output user root).
func (d *developer) outputBase(t *testing.T) string {
	t.Helper()
	ents, _ := os.ReadDir(d.outRoot)
	for _, e := range ents {
		if len(e.Name()) == 32 {
			return filepath.Join(d.outRoot, e.Name())
		}
	}
	t.Fatalf("no output base under %s", d.outRoot)
	return ""
}

type result struct {
	stdout, stderr string
	code           int
}

// command prepares the real Bazel client in the workspace, with a small
// environment of its own.
func (d *developer) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bazel", args...)
	cmd.Dir = d.workspace
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + d.home, "USER=" + d.name, "SECRET_TOKEN=do-not-send"}
	return cmd
}

func (d *developer) bazel(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := d.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("%s$ bazel %s\n%s%s", d.name, strings.Join(args, " "), r.stdout, r.stderr)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("bazel %v: %v", args, err)
	}
	return r
}

// proxyLog returns the proxy's log (its jvm.out).
func (d *developer) proxyLog(t *testing.T) string {
	ents, _ := os.ReadDir(d.outRoot)
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(d.outRoot, e.Name(), "server", "jvm.out")); err == nil {
			return string(b)
		}
	}
	return ""
}

// shutdown stops the developer's proxy, killing it if it does not exit.
func (d *developer) shutdown(t *testing.T) {
	ents, _ := os.ReadDir(d.outRoot)
	for _, e := range ents {
		pidFile := filepath.Join(d.outRoot, e.Name(), "server", "server.pid.txt")
		b, err := os.ReadFile(pidFile)
		if err != nil {
			continue
		}
		d.bazel(t, "shutdown")
		var pid int
		fmt.Sscan(string(b), &pid)
		if pid > 0 && waitFor(10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }) != nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if t.Failed() {
		t.Logf("%s's proxy log:\n%s", d.name, d.proxyLog(t))
	}
	// A proxy that did not obey is a bug, and must not outlive the test.
	config := filepath.Join(d.dir, "javabase", rbs.JavabaseConfigFile)
	for _, p := range processesMentioning(config) {
		var pid int
		fmt.Sscan(p, &pid)
		if pid > 0 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s's proxy still ran after shutdown: %s", d.name, p)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// tempDirForSandboxes returns a temporary directory that sandbox uids can
// traverse (t.TempDir's parents are 0700).
func tempDirForSandboxes(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nimbus-rbs-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Output bases hold read-only trees.
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(dir)
	})
	return dir
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
