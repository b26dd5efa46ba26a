package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
)

// Defaults of Config's knobs.
const (
	DefaultMaxJobs         = 1
	DefaultLeaseWait       = 30 * time.Second
	DefaultSyncWait        = 20 * time.Second
	DefaultIdleHeartbeat   = 15 * time.Second
	DefaultFlushInterval   = 25 * time.Millisecond
	DefaultMaxChunk        = 64 << 10
	DefaultMaxUnacked      = 256 << 20
	DefaultLogDrainTimeout = 30 * time.Second
	DefaultRequestTimeout  = 30 * time.Second
	DefaultMaxBackoff      = 30 * time.Second
)

// Limits the API puts on Config's knobs.
const (
	// maxLeaseWait is the longest lease long poll the server accepts.
	maxLeaseWait = 60 * time.Second
	// maxBatch bounds the raw bytes of one log upload: base64 makes them
	// 4/3 larger and a request body may be at most 1 MiB.
	maxBatch = 512 << 10
	minChunk = 1 << 10
)

// Config configures an Agent. Zero knobs take their defaults.
type Config struct {
	// Server is the control plane's base URL, e.g. https://nimbus.example.
	Server string
	// StateDir keeps the agent's credential (credential.json). It is
	// created with mode 0700 if missing.
	StateDir string
	// JoinToken enrolls the agent when StateDir holds no credential for
	// Server. It works once.
	JoinToken string
	// Name, Hostname, Labels and MaxJobs are what the agent declares to
	// the control plane. Labels must be a subset of those its join token
	// allows; none means all of those. MaxJobs is how many jobs run at
	// once (default 1).
	Name     string
	Hostname string
	Labels   []string
	MaxJobs  int
	// Version is the agent's version, sent at enrollment and registration.
	Version string

	// Executor runs the workloads. When it has a Close method (an
	// io.Closer), Run calls it as it returns.
	Executor executor.Executor
	// Containers runs the workloads of jobs with a container image (the
	// Docker executor); nil: such jobs fail.
	Containers executor.Executor
	// DockerLabel: a job with this label (and no container image) gets a
	// Docker daemon of its own in its sandbox (executor.Spec.Docker);
	// empty: none does.
	DockerLabel string
	// JobLimits are the resource limits of every job (executor.Spec.Limits).
	JobLimits executor.Limits
	// ScratchDirs hold only per-job data of this agent that a crashed
	// agent may have left behind (an executor that owns its work root, as
	// bwrap's does, sweeps that itself). Run empties each at start.
	ScratchDirs []string

	// RunnerDir is a GitHub Actions runner directory. Without it the agent
	// fails every GitHub job it is given.
	RunnerDir string
	// RunnerClones is where each GitHub job gets its own clone of
	// RunnerDir; every directory above it must be traversable by the
	// sandbox uids. Required with RunnerDir; emptied at start.
	RunnerClones string
	// RunnerUIDs gives the uid and gid a job in a slot runs as, who must
	// own its runner clone: (*bwrap.Executor).Identity. Required with
	// RunnerDir.
	RunnerUIDs func(slot int) (uid, gid int, err error)

	// Network gives each job its own network with its egress policy
	// enforced in the data plane; nil: jobs have no network at all.
	Network *netpolicy.Manager
	// DefaultEgress is the policy of a job whose lease carries none (a
	// control plane that decides none). Default: offline.
	DefaultEgress apiv1.EgressPolicy
	// InterceptActionsCache makes GitHub jobs' unmodified actions/cache
	// use the platform's cache: their sandbox answers GitHub's cache hosts
	// (netpolicy.Spec.InterceptActionsCache).
	InterceptActionsCache bool
	// PlatformTransport sends what jobs ask of the platform's endpoints
	// (their caches) to the control plane. Default: HTTPClient's.
	PlatformTransport http.RoundTripper

	// RBS makes the agent offer remote Bazel sessions; nil: none.
	RBS *RBSConfig

	// HTTPClient sends the API calls. Default: a client without timeout
	// (every call carries its own deadline).
	HTTPClient *http.Client
	// Logger receives the agent's own logs, never job output. Default:
	// discard.
	Logger *slog.Logger

	// LeaseWait is how long one lease request waits for a job (≤ 60s).
	LeaseWait time.Duration
	// SyncWait is how long a heartbeat waits for a cancellation; it is
	// shortened to a third of the shortest lease TTL.
	SyncWait time.Duration
	// IdleHeartbeat is the heartbeat period when no job runs.
	IdleHeartbeat time.Duration
	// FlushInterval is how long output may wait before it is cut into a
	// chunk and sent (when it does not fill one first).
	FlushInterval time.Duration
	// MaxChunk bounds a log chunk's size in bytes (≤ 512 KiB).
	MaxChunk int
	// MaxUnacked bounds the output of one job held until the server
	// acknowledges it, on disk in <StateDir>/log-spool (in memory, at
	// most 32 MiB, without a StateDir); past it, the job's writes block.
	MaxUnacked int
	// LogDrainTimeout bounds the wait for the last chunks' acknowledgement
	// before a job is completed anyway.
	LogDrainTimeout time.Duration
	// RequestTimeout bounds every API call but the long polls, which get
	// their wait plus this.
	RequestTimeout time.Duration
	// MaxBackoff bounds the wait between retries.
	MaxBackoff time.Duration
}

// withDefaults returns c with every unset knob at its default.
func (c Config) withDefaults() Config {
	setDefault(&c.MaxJobs, DefaultMaxJobs)
	setDefault(&c.LeaseWait, DefaultLeaseWait)
	setDefault(&c.SyncWait, DefaultSyncWait)
	setDefault(&c.IdleHeartbeat, DefaultIdleHeartbeat)
	setDefault(&c.FlushInterval, DefaultFlushInterval)
	setDefault(&c.MaxChunk, DefaultMaxChunk)
	setDefault(&c.MaxUnacked, DefaultMaxUnacked)
	setDefault(&c.LogDrainTimeout, DefaultLogDrainTimeout)
	setDefault(&c.RequestTimeout, DefaultRequestTimeout)
	setDefault(&c.MaxBackoff, DefaultMaxBackoff)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DefaultEgress.Mode == "" {
		c.DefaultEgress.Mode = string(netpolicy.ModeOffline)
	}
	if c.PlatformTransport == nil {
		c.PlatformTransport = c.HTTPClient.Transport
	}
	c.Server = strings.TrimRight(c.Server, "/")
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validate checks a Config that has its defaults. Its error names every
// field that is wrong.
func (c Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if c.Server == "" {
		bad("server", "required")
	} else if u, err := url.Parse(c.Server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("server", "%q is not an http(s) URL", c.Server)
	}
	checkAbs := func(field, dir string, required bool) {
		switch {
		case dir == "" && required:
			bad(field, "required")
		case dir != "" && !filepath.IsAbs(dir):
			bad(field, "%q must be an absolute path", dir)
		case dir != "" && filepath.Clean(dir) == "/":
			bad(field, "must not be /")
		}
	}
	checkAbs("state dir", c.StateDir, true)
	if c.Name == "" {
		bad("name", "required")
	}
	for i, l := range c.Labels {
		if strings.TrimSpace(l) == "" || strings.ContainsAny(l, " \t\n,") {
			bad("labels", "label %d (%q) is empty or contains a space or comma", i, l)
		} else if slices.Index(c.Labels, l) != i {
			bad("labels", "%q is listed twice", l)
		}
	}
	if c.MaxJobs < 1 {
		bad("max jobs", "%d: must be at least 1", c.MaxJobs)
	}
	if c.Executor == nil {
		bad("executor", "required")
	}
	if err := c.JobLimits.Validate(); err != nil {
		bad("job limits", "%v", err)
	}
	for i, d := range c.ScratchDirs {
		checkAbs(fmt.Sprintf("scratch dirs[%d]", i), d, true)
	}
	if c.RunnerDir != "" {
		checkAbs("runner dir", c.RunnerDir, true)
		checkAbs("runner clones", c.RunnerClones, true)
		if c.RunnerUIDs == nil {
			bad("runner uids", "required with a runner dir")
		}
	}
	if err := netpolicy.PolicyFrom(c.DefaultEgress).Validate(); err != nil {
		bad("default egress", "%v", err)
	}
	if r := c.RBS; r != nil {
		if _, _, err := net.SplitHostPort(r.Address); err != nil || r.Address == "" {
			bad("rbs address", "%q: want host:port as proxies reach it", r.Address)
		}
		if len(r.InstallMD5) != 32 {
			bad("rbs install md5", "%q: want Bazel's 32-digit install_md5", r.InstallMD5)
		}
		if r.MaxSessions < 1 {
			bad("rbs max sessions", "%d: must be at least 1", r.MaxSessions)
		}
		if r.NewHost == nil {
			bad("rbs new host", "required")
		}
	}
	positive := func(field string, d time.Duration) {
		if d < 0 {
			bad(field, "%v: must not be negative", d)
		}
	}
	positive("lease wait", c.LeaseWait)
	positive("sync wait", c.SyncWait)
	positive("idle heartbeat", c.IdleHeartbeat)
	positive("flush interval", c.FlushInterval)
	positive("log drain timeout", c.LogDrainTimeout)
	positive("request timeout", c.RequestTimeout)
	positive("max backoff", c.MaxBackoff)
	if c.LeaseWait > maxLeaseWait {
		bad("lease wait", "%v: must be at most %v", c.LeaseWait, maxLeaseWait)
	}
	if c.MaxChunk < minChunk || c.MaxChunk > maxBatch {
		bad("max chunk", "%d: must be between %d and %d bytes", c.MaxChunk, minChunk, maxBatch)
	}
	if c.MaxUnacked < c.MaxChunk {
		bad("max unacked", "%d: must be at least max chunk (%d)", c.MaxUnacked, c.MaxChunk)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	return nil
}
