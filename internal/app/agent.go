package app

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nimbus-build/nimbus/internal/agent"
	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
	"github.com/nimbus-build/nimbus/internal/executor/docker"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
)

// AgentConfig configures a host agent.
type AgentConfig struct {
	Server    string
	CAFile    string
	JoinToken string
	StateDir  string
	WorkDir   string
	Name      string
	Labels    []string
	MaxJobs   int
	RunnerDir string
	UIDBase   int
	// LogSpool bounds one job's output held until the server has it, on
	// disk under the state dir.
	LogSpool  int64
	LogLevel  string
	LogFormat string

	// Limits of each job (0: none). JobMemory and JobDisk are autoSize
	// until Validate works them out.
	JobCPUs   float64
	JobMemory int64
	JobPids   int64
	JobDisk   int64
	// Sandbox networks (as root): each job in its own network namespace
	// with its egress policy enforced in nftables.
	SandboxNetwork bool
	SandboxSubnet4 string
	SandboxSubnet6 string
	SandboxDNS     []string
	DefaultEgress  string
	// DockerSocket enables the Docker executor for jobs with a container
	// image (empty: off).
	DockerSocket string
	// DockerLabel: jobs with this label get a Docker daemon of their own in
	// their sandbox (empty: none do).
	DockerLabel string
	// DockerInit is the static nimbus binary each container runs first
	// (default: this executable).
	DockerInit string
	// DockerDaemonWarm: slots 0 … N-1 each keep a sandbox with its Docker
	// daemon started for jobs with DockerLabel.
	DockerDaemonWarm int
	// DockerWarm lists IMAGE=N: the Docker executor keeps a ready
	// container of IMAGE for each of the slots 0 … N-1.
	DockerWarm []string
	// MetricsListen serves the agent's Prometheus metrics at /metrics
	// (empty: not served, unless Metrics is set).
	MetricsListen string
	// Metrics, when set (nimbus up: the control plane's registry), takes
	// the agent's metrics instead of a registry of its own.
	Metrics prometheus.Registerer
	// InterceptActionsCache: GitHub jobs' unmodified actions/cache uses
	// Nimbus's cache (docs/sandbox-network.md).
	InterceptActionsCache bool

	RBSListen      string
	RBSAdvertise   string
	RBSStorageRoot string
	RBSMaxSessions int
	RBSInstallBase string
	RBSUIDBase     int
}

// Register binds the agent's settings to flags. Within `nimbus up` the
// server and join token are not flags: the agent enrolls itself.
func (c *AgentConfig) Register(s *config.Set, standalone bool) {
	if standalone {
		s.String("config", "", "YAML file of settings (keys are these flags' names)")
		s.StringVar(&c.Server, "server", "", "control plane URL (required)")
		s.StringVar(&c.CAFile, "ca-file", "", "PEM bundle to trust for the control plane's HTTPS (its <data-dir>/ca.crt with --tls-auto)")
		s.StringVar(&c.JoinToken, "join-token", "", "one-time join `token` from nimbus ctl agents join-token (needed only for the first start)")
		s.StringVar(&c.StateDir, "state-dir", "/var/lib/nimbus/agent", "directory for the agent's credential")
		s.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
		s.StringVar(&c.LogFormat, "log-format", "text", "text or json")
		s.Var(config.ListValue{List: &c.Labels}, "labels", "labels to serve (default: all the join token allows)")
	}
	host, _ := os.Hostname()
	s.StringVar(&c.WorkDir, "work-dir", "", "directory for job workspaces; it and its parents must be traversable by the sandbox uids (default /var/lib/nimbus/work/<id> as root, else <state-dir>/work)")
	s.StringVar(&c.Name, "agent-name", host, "name the agent shows in nimbus ctl agents list")
	s.IntVar(&c.MaxJobs, "max-jobs", runtime.NumCPU(), "jobs to run at once")
	s.StringVar(&c.RunnerDir, "runner-dir", "", "GitHub Actions runner directory (with run.sh), for GitHub jobs")
	c.LogSpool = agent.DefaultMaxUnacked
	s.Var(config.SizeValue{Size: &c.LogSpool}, "log-spool-size", "a job's output held on disk (<state-dir>/log-spool) while the server is slow or down; past it the job's writes wait")
	s.IntVar(&c.UIDBase, "sandbox-uid-base", bwrap.DefaultUIDBase, "as root, the job in slot n runs as host uid base+n")
	s.Float64Var(&c.JobCPUs, "job-cpus", 0, "CPU time each job may use, in CPUs, e.g. 2 or 0.5 (0: no cap; running jobs share the CPUs evenly)")
	c.JobMemory, c.JobDisk = autoSize, autoSize
	s.Var(autoSizeValue{&c.JobMemory}, "job-memory", "memory each job may use, e.g. 4GiB; past it the job is stopped (auto: the host's memory / --max-jobs; 0: none)")
	s.Int64Var(&c.JobPids, "job-pids", DefaultJobPids, "processes and threads each job may have at once (0: none)")
	s.Var(autoSizeValue{&c.JobDisk}, "job-disk", "what each job may store in its workspace and /tmp, e.g. 20GiB; past it the job is stopped (auto: 3/4 of the work dir's free space at start / --max-jobs; 0: none)")
	s.BoolVar(&c.SandboxNetwork, "sandbox-network", true, "give each job its own network with its egress policy enforced (needs root; off: jobs have no network)")
	s.StringVar(&c.SandboxSubnet4, "sandbox-subnet4", netpolicy.DefaultSubnet4.String(), "IPv4 pool of the jobs' networks, a /30 each; pick one the host's networks do not use")
	s.StringVar(&c.SandboxSubnet6, "sandbox-subnet6", netpolicy.DefaultSubnet6.String(), "IPv6 pool of the jobs' networks, a /64 each")
	s.Var(config.ListValue{List: &c.SandboxDNS}, "sandbox-dns", "DNS servers (ip:port) the jobs' resolvers ask (default: the host's /etc/resolv.conf)")
	s.StringVar(&c.DockerSocket, "docker-socket", "", "run jobs with a container image through this Docker Engine's socket, e.g. /var/run/docker.sock (empty: no Docker executor; give the agent the label \"container\")")
	s.StringVar(&c.DockerLabel, "docker-label", "docker", "jobs with this label get a Docker daemon of their own inside their sandbox, DOCKER_HOST pointing at it (rootless Podman; give the agent the label too; empty: none)")
	s.StringVar(&c.DockerInit, "docker-init", "", "statically linked nimbus binary each container and warm sandbox runs as its first process, readable by the sandbox uids (default: this one; make build links it statically)")
	s.IntVar(&c.DockerDaemonWarm, "docker-daemon-warm", 0, "as root, keep a sandbox with its Docker daemon started for each of the slots 0 … N-1, so that a job with --docker-label (GitHub's or the API's, with the agent's limits) starts with its daemon answering; used once, then replaced (metrics nimbus_warm_pool_*)")
	s.Var(config.ListValue{List: &c.DockerWarm}, "docker-warm", "IMAGE=N,…: the Docker executor keeps a container of IMAGE ready, started and waiting, for each of the slots 0 … N-1, so that a job of that image (with the agent's limits, no extra binds) starts at once; used once, then replaced (metrics nimbus_warm_pool_*)")
	if standalone {
		s.StringVar(&c.MetricsListen, "metrics-listen", "", "serve the agent's Prometheus metrics (warm pools) at http://ADDR/metrics, e.g. 127.0.0.1:9101 (empty: off)")
	}
	s.BoolVar(&c.InterceptActionsCache, "intercept-actions-cache", true, "give GitHub jobs' unmodified actions/cache Nimbus's cache: their sandbox answers GitHub's cache hosts with a certificate only it trusts (needs sandbox networks)")
	s.StringVar(&c.DefaultEgress, "default-egress", string(netpolicy.ModeOffline), "egress mode of a job whose control plane sends no policy: offline, allow-list or audit")
	s.StringVar(&c.RBSListen, "rbs-listen", "", "offer remote Bazel: address of the sessions' mTLS tunnel, e.g. :7443 (empty: off)")
	s.StringVar(&c.RBSAdvertise, "rbs-advertise", "", "host:port proxies reach the tunnel at (default: the listen address)")
	s.StringVar(&c.RBSStorageRoot, "rbs-storage-root", "/var/lib/nimbus/rbs", "where remote Bazel sessions keep workspaces and output bases (<root>/<org>/<user>/<repo>)")
	s.IntVar(&c.RBSMaxSessions, "rbs-max-sessions", 4, "remote Bazel sessions at once")
	s.StringVar(&c.RBSInstallBase, "rbs-bazel-install-base", "/usr/share/bazel", "the Bazel installation sessions run (its A-server.jar and install_base_key)")
	s.IntVar(&c.RBSUIDBase, "rbs-uid-base", 160000, "as root, remote Bazel sessions run as host uids base, base+1, …")
}

// Validate checks the settings and fills derived ones.
func (c *AgentConfig) Validate(standalone bool) error {
	if standalone && c.Server == "" {
		return errors.New("server: required (the control plane's URL)")
	}
	if c.StateDir == "" {
		return errors.New("state-dir: required")
	}
	if c.LogSpool < 0 || c.LogSpool > 0 && c.LogSpool < 1<<20 {
		return errors.New("log-spool-size: at least 1MiB")
	}
	abs, err := filepath.Abs(c.StateDir)
	if err != nil {
		return err
	}
	c.StateDir = abs
	if c.WorkDir == "" {
		c.WorkDir = defaultWorkDir(abs)
	}
	if c.WorkDir, err = filepath.Abs(c.WorkDir); err != nil {
		return err
	}
	if c.MaxJobs < 1 || c.MaxJobs > 1024 {
		return fmt.Errorf("max-jobs: %d: 1-1024", c.MaxJobs)
	}
	if c.JobMemory == autoSize {
		total, err := hostMemory()
		if err != nil {
			return fmt.Errorf("job-memory: auto: %w", err)
		}
		c.JobMemory = max(total/int64(c.MaxJobs)>>20<<20, executor.MinMemory)
	}
	if c.JobDisk == autoSize {
		free, err := freeSpace(c.WorkDir)
		if err != nil {
			return fmt.Errorf("job-disk: auto: %w", err)
		}
		c.JobDisk = max(free/4*3/int64(c.MaxJobs)>>30<<30, executor.MinDisk)
	}
	for flag, l := range map[string]executor.Limits{
		"job-cpus": {CPUs: c.JobCPUs}, "job-memory": {Memory: c.JobMemory}, "job-pids": {Pids: c.JobPids}, "job-disk": {Disk: c.JobDisk},
	} {
		if err := l.Validate(); err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
	}
	if c.SandboxSubnet4 == "" {
		c.SandboxSubnet4 = netpolicy.DefaultSubnet4.String()
	}
	if c.SandboxSubnet6 == "" {
		c.SandboxSubnet6 = netpolicy.DefaultSubnet6.String()
	}
	if c.DefaultEgress == "" {
		c.DefaultEgress = string(netpolicy.ModeOffline)
	}
	for _, p := range []struct{ flag, v string }{{"sandbox-subnet4", c.SandboxSubnet4}, {"sandbox-subnet6", c.SandboxSubnet6}} {
		if _, err := netip.ParsePrefix(p.v); err != nil {
			return fmt.Errorf("%s: %v", p.flag, err)
		}
	}
	for _, d := range c.SandboxDNS {
		if _, err := netip.ParseAddrPort(d); err != nil {
			return fmt.Errorf("sandbox-dns: %q: want ip:port", d)
		}
	}
	if _, err := netpolicy.ParseMode(c.DefaultEgress); err != nil {
		return fmt.Errorf("default-egress: %v", err)
	}
	if _, err := c.dockerWarm(executor.Limits{}); err != nil {
		return err
	}
	if c.DockerDaemonWarm < 0 || c.DockerDaemonWarm > max(c.MaxJobs, 1) {
		return fmt.Errorf("docker-daemon-warm: %d: want 0 to --max-jobs (%d)", c.DockerDaemonWarm, c.MaxJobs)
	}
	if c.DockerDaemonWarm > 0 && c.DockerLabel == "" {
		return errors.New("docker-daemon-warm: needs --docker-label")
	}
	if c.RunnerDir != "" {
		if _, err := os.Stat(filepath.Join(c.RunnerDir, "run.sh")); err != nil {
			return fmt.Errorf("runner-dir: %v (want a GitHub Actions runner directory with run.sh)", err)
		}
	}
	return nil
}

// defaultWorkDir is, for root, a directory outside the (0700) state dir
// that sandbox uids can traverse, unique per state dir because an agent
// empties its work dir when it starts.
func defaultWorkDir(stateDir string) string {
	if os.Geteuid() != 0 {
		return filepath.Join(stateDir, "work")
	}
	h := sha256.Sum256([]byte(stateDir))
	return filepath.Join("/var/lib/nimbus/work", hex.EncodeToString(h[:6]))
}

// DefaultJobPids is the default of --job-pids.
const DefaultJobPids = 8192

// autoSize stands for a size flag's "auto" until Validate works it out.
const autoSize = -1

// autoSizeValue is a size flag that may also be auto.
type autoSizeValue struct{ v *int64 }

func (m autoSizeValue) String() string {
	if m.v != nil && *m.v == autoSize {
		return "auto"
	}
	return config.SizeValue{Size: m.v}.String()
}

func (m autoSizeValue) Set(s string) error {
	if strings.TrimSpace(s) == "auto" {
		*m.v = autoSize
		return nil
	}
	return config.SizeValue{Size: m.v}.Set(s)
}

// freeSpace is what an unprivileged user may still write on the
// filesystem of dir, or of its nearest existing parent.
func freeSpace(dir string) (int64, error) {
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			return int64(st.Bavail) * int64(st.Bsize), nil
		}
		if !errors.Is(err, unix.ENOENT) || dir == filepath.Dir(dir) {
			return 0, fmt.Errorf("statfs %s: %w", dir, err)
		}
		dir = filepath.Dir(dir)
	}
}

// hostMemory is the host's memory in bytes (MemTotal of /proc/meminfo).
func hostMemory() (int64, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kib int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err != nil {
				return 0, fmt.Errorf("/proc/meminfo: %q", line)
			}
			return kib << 10, nil
		}
	}
	return 0, errors.New("/proc/meminfo has no MemTotal")
}

// jobLimits are the limits every job gets: none when the agent is not
// root, which cannot enforce them.
func (c AgentConfig) jobLimits(log *slog.Logger) executor.Limits {
	l := executor.Limits{CPUs: c.JobCPUs, Memory: c.JobMemory, Pids: c.JobPids, Disk: c.JobDisk}
	if l != (executor.Limits{}) && os.Geteuid() != 0 {
		log.Warn("the agent is not root: jobs run without cpu, memory, pids and disk limits (--job-*)")
		return executor.Limits{}
	}
	return l
}

// NewAgent builds an agent with the bubblewrap executor, checking first
// that sandboxes can run here. The agent closes the executor when its Run
// returns.
func NewAgent(ctx context.Context, c AgentConfig, log *slog.Logger) (_ *agent.Agent, err error) {
	for _, d := range []string{c.WorkDir, filepath.Dir(c.WorkDir)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("work-dir: %w", err)
		}
		os.Chmod(d, 0o711)
	}
	limits := c.jobLimits(log)
	opts := bwrap.Options{WorkRoot: filepath.Join(c.WorkDir, "jobs"), UIDBase: c.UIDBase, Logger: log}
	if err := bwrap.Check(ctx, opts, limits); err != nil {
		hint := ""
		if limits.Disk > 0 {
			hint = " (without loop devices and mkfs.ext4, run with --job-disk 0: no disk limit)"
		}
		return nil, fmt.Errorf("sandbox check: %w%s", err, hint)
	}
	warmMetrics, err := warmpool.NewMetrics(c.Metrics)
	if err != nil {
		return nil, err
	}
	// The executor owns its work root: New sweeps what a crashed agent
	// left there and in its cgroups.
	if c.DockerDaemonWarm > 0 {
		opts.WarmDocker, opts.WarmLimits, opts.Metrics, opts.Init = c.DockerDaemonWarm, limits, warmMetrics, c.DockerInit
		opts.WarmNetFiles = netpolicy.FilePaths
		if c.RunnerDir != "" {
			opts.WarmBinds = []string{"/runner"} // agent.runnerTarget: GitHub jobs' runner directory
		}
	}
	ex, err := bwrap.New(opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			ex.Close()
		}
	}()
	cfg := agent.Config{
		Server: c.Server, StateDir: c.StateDir, JoinToken: c.JoinToken, Name: c.Name, Labels: c.Labels, MaxJobs: c.MaxJobs,
		Version: Version, Executor: ex, JobLimits: limits, Logger: log, MaxUnacked: int(c.LogSpool),
		DefaultEgress: apiv1.EgressPolicy{Mode: c.DefaultEgress}, InterceptActionsCache: c.InterceptActionsCache,
		DockerLabel: c.DockerLabel,
	}
	if cfg.Network, err = sandboxNetworks(c, log); err != nil {
		return nil, err
	}
	if c.DockerSocket != "" {
		warm, err := c.dockerWarm(limits)
		if err != nil {
			return nil, err
		}
		ex, err := docker.New(ctx, docker.Options{Socket: c.DockerSocket, WorkRoot: filepath.Join(c.WorkDir, "containers"),
			UIDBase: c.UIDBase, Init: c.DockerInit, Logger: log, Warm: warm, Metrics: warmMetrics})
		if err != nil {
			return nil, err
		}
		cfg.Containers = ex
		defer func() {
			if err != nil {
				ex.Close()
			}
		}()
	} else if len(c.DockerWarm) > 0 {
		return nil, errors.New("docker-warm: needs the Docker executor (--docker-socket)")
	}
	if host, err := os.Hostname(); err == nil {
		cfg.Hostname = host
	}
	if c.CAFile != "" {
		if cfg.HTTPClient, err = apiclient.HTTPClientTrusting(c.CAFile, nil); err != nil {
			return nil, err
		}
	}
	if c.RunnerDir != "" {
		cfg.RunnerDir, cfg.RunnerClones, cfg.RunnerUIDs = c.RunnerDir, filepath.Join(c.WorkDir, "runners"), ex.Identity
	}
	if c.RBSListen != "" {
		r, err := rbsOffer(c, limits, cfg.Network, log)
		if err != nil {
			return nil, err
		}
		cfg.RBS = r
	}
	return agent.New(cfg)
}

// dockerWarm parses DockerWarm; the pools' containers get the jobs'
// limits (without the disk limit, the bubblewrap executor's).
func (c *AgentConfig) dockerWarm(limits executor.Limits) ([]docker.Warm, error) {
	var out []docker.Warm
	limits.Disk = 0
	for _, item := range c.DockerWarm {
		i := strings.LastIndexByte(item, '=')
		if i <= 0 {
			return nil, fmt.Errorf("docker-warm: %q: want IMAGE=N", item)
		}
		n, err := strconv.Atoi(item[i+1:])
		if err != nil || n < 1 || n > max(c.MaxJobs, 1) {
			return nil, fmt.Errorf("docker-warm: %q: N must be a number of slots from 1 to --max-jobs (%d)", item, c.MaxJobs)
		}
		if strings.ContainsAny(item[:i], " \t\n\x00") {
			return nil, fmt.Errorf("docker-warm: %q: bad characters in the image", item)
		}
		out = append(out, docker.Warm{Image: item[:i], Slots: n, Limits: limits})
	}
	return out, nil
}

// sandboxNetworks sets up the jobs' networks, or says why jobs will have
// none.
func sandboxNetworks(c AgentConfig, log *slog.Logger) (*netpolicy.Manager, error) {
	if !c.SandboxNetwork {
		log.Warn("sandbox networks are off (--sandbox-network=false): jobs have no network")
		return nil, nil
	}
	if os.Geteuid() != 0 {
		log.Warn("sandbox networks need root: jobs have no network (run the agent as root, or --sandbox-network=false to silence this)")
		return nil, nil
	}
	cfg := netpolicy.Config{Subnet4: netip.MustParsePrefix(c.SandboxSubnet4), Subnet6: netip.MustParsePrefix(c.SandboxSubnet6),
		Upstream: c.SandboxDNS, Logger: log}
	m, err := netpolicy.NewManager(cfg)
	if err != nil {
		return nil, fmt.Errorf("sandbox networks: %w (--sandbox-network=false runs jobs without any network)", err)
	}
	return m, nil
}

// AgentMain is `nimbus agent`.
func AgentMain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var c AgentConfig
	s := config.NewSet("nimbus agent", stderr)
	c.Register(s, true)
	s.Usage = func() {
		fmt.Fprintf(stderr, "Usage: nimbus agent --server URL [--join-token TOKEN] [flags]\n\nRuns a host agent: enrolls once with a join token, then leases jobs and runs them in\nbubblewrap sandboxes. SIGINT/SIGTERM stop it gracefully (running jobs finish);\na second signal stops it at once.\n\nFlags:\n")
		s.PrintDefaults()
	}
	if err := s.Parse(args, getenv, "config"); err != nil {
		return 2
	}
	if err := c.Validate(true); err != nil {
		fmt.Fprintf(stderr, "nimbus agent: %v\n", err)
		return 2
	}
	log := NewLogger(stderr, c.LogLevel, c.LogFormat)
	return runAgent(ctx, c, log, stderr)
}

// runAgent runs an agent until ctx ends: the first stop is graceful (no new
// jobs, running ones finish), a second one is immediate.
func runAgent(ctx context.Context, c AgentConfig, log *slog.Logger, stderr io.Writer) int {
	hard, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	if c.MetricsListen != "" && c.Metrics == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		ln, err := net.Listen("tcp", c.MetricsListen)
		if err != nil {
			fmt.Fprintf(stderr, "nimbus agent: metrics-listen: %v\n", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("agent metrics", "url", "http://"+ln.Addr().String()+"/metrics")
		c.Metrics = reg
	}
	a, err := NewAgent(hard, c, log)
	if err != nil {
		fmt.Fprintf(stderr, "nimbus agent: %v\n", err)
		return 1
	}
	go func() {
		<-ctx.Done()
		log.Info("stopping: no new jobs; running jobs finish (signal again to stop them now)")
		a.GracefulStop()
		secondSignal(hard, kill)
	}()
	if err := a.Run(hard); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "nimbus agent: %v\n", err)
		return 1
	}
	return 0
}

// rbsOffer prepares the agent's remote Bazel offer: the Bazel installation,
// the tunnel's listener and how to build the session host once the
// control plane has signed the tunnel's certificate.
func rbsOffer(c AgentConfig, limits executor.Limits, networks *netpolicy.Manager, log *slog.Logger) (*agent.RBSConfig, error) {
	bz, err := server.Bazel{InstallBase: c.RBSInstallBase}.Resolve()
	if err != nil {
		return nil, fmt.Errorf("rbs: %w", err)
	}
	advertise := c.RBSAdvertise
	if advertise == "" {
		advertise = c.RBSListen
		if host, port, err := net.SplitHostPort(advertise); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
			h, _ := os.Hostname()
			advertise = net.JoinHostPort(h, port)
		}
	}
	version := "unknown"
	if b, err := os.ReadFile(filepath.Join(bz.InstallBase, "build-label.txt")); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		version = strings.TrimSpace(string(b))
	}
	if err := os.MkdirAll(c.RBSStorageRoot, 0o711); err != nil {
		return nil, fmt.Errorf("rbs storage root: %w", err)
	}
	return &agent.RBSConfig{
		Address: advertise, InstallMD5: bz.InstallMD5, Version: version, MaxSessions: c.RBSMaxSessions,
		NewHost: func(cert tls.Certificate, roots *x509.CertPool) (agent.SessionHost, error) {
			// The sessions' own executor: the jobs' sandbox, with the
			// sessions' uids, a work root of their own and the JDK's
			// configuration under /etc.
			ex, err := bwrap.New(bwrap.Options{WorkRoot: filepath.Join(c.WorkDir, "sessions"), UIDBase: c.RBSUIDBase,
				Etc: append(slices.Clone(bwrap.DefaultEtc), bz.EtcEntries()...), Logger: log})
			if err != nil {
				return nil, fmt.Errorf("rbs sandbox: %w", err)
			}
			opts := server.Options{StorageRoot: c.RBSStorageRoot, Listen: c.RBSListen, Advertise: advertise, Certificate: cert,
				Roots: roots, Bazel: bz, MaxSessions: c.RBSMaxSessions, Logger: log,
				Executor: ex, Limits: limits, Networks: networks}
			if os.Geteuid() == 0 {
				opts.UIDs = server.UIDRange{First: c.RBSUIDBase, Count: c.RBSMaxSessions}
			}
			h, err := server.NewHost(opts)
			if err != nil {
				ex.Close()
				return nil, err
			}
			return h, nil
		},
	}, nil
}
