// Package app holds Nimbus's composition roots: it builds the control
// plane, the agent and their combination (`nimbus up`) from typed
// configuration, and owns their lifecycles. cmd/nimbus only dispatches.
package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/api"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/egress"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
	"github.com/nimbus-build/nimbus/internal/registry"
	"github.com/nimbus-build/nimbus/internal/sessions"
	"github.com/nimbus-build/nimbus/internal/sso"
)

// ServerConfig configures the control plane.
type ServerConfig struct {
	DataDir       string
	Listen        string
	PublicURL     string
	Database      string
	MasterKeyFile string
	DatabaseConns int
	LogLevel      string
	LogFormat     string

	LeaseTTL       time.Duration
	MaxAttempts    int
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	OrgJobRate     float64
	OrgJobBurst    int
	PoolLabels     []string
	MaxLogBytes    int64
	// LogBatch sets how log uploads are batched into the store's writes.
	LogBatch logs.BatchConfig
	// LogStore is where jobs' output goes: "" for the database, or a
	// ClickHouse URL; LogRetention how long ClickHouse keeps it (0:
	// forever).
	LogStore     string
	LogRetention time.Duration

	SessionIdleTTL       time.Duration
	RBSAgentCertTTL      time.Duration
	RBSRequireClientCert bool

	TLSCertFile string
	TLSKeyFile  string
	TLSAuto     bool
	TLSHosts    []string

	// Limits bound what unauthenticated clients can hold of the server.
	Limits api.EdgeLimits
	// MetricsListen serves /metrics on a listener of its own (and not on
	// Listen); MetricsTokenFile holds a bearer token /metrics asks for.
	MetricsListen    string
	MetricsTokenFile string
	metricsToken     string

	CacheDir        string
	CacheMaxBytes   int64
	CacheCompress   bool
	CacheGRPCListen string
	CacheQuotaSoft  int64
	CacheQuotaHard  int64
	CacheS3         cache.S3Config

	// The registry cache: a YAML file (upstreams, per-org policies and
	// credentials, signature keys) and the flags that add to it.
	RegistryConfigFile string
	RegistryUpstreams  []string
	RegistryMirror     string
	RegistryTagTTL     time.Duration
	registryConfig     registry.Config

	// Egress policy of jobs: a rules file, or for API jobs a mode and an
	// allow-list given as flags.
	EgressPolicyFile string
	EgressMode       string
	EgressAllow      []string
	egressRules      egress.Rules

	// DashboardConfig is the dashboard's sign-in configuration (YAML:
	// providers, role mapping rules, session bounds).
	DashboardConfig string
	dashboard       sso.Config

	GitHubAppID         int64
	GitHubClientID      string
	GitHubAppKeyFile    string
	GitHubAPIURL        string
	GitHubRunnerGroupID int64
	// GitHubRedeliverInterval is how often failed webhook deliveries are
	// looked for and redelivered (0: never).
	GitHubRedeliverInterval time.Duration
}

// Register binds the settings to flags (and so to the environment and the
// config file).
func (c *ServerConfig) Register(s *config.Set) {
	d := jobs.DefaultConfig()
	s.String("config", "", "YAML file of settings (keys are these flags' names)")
	s.StringVar(&c.DataDir, "data-dir", ".nimbus", "directory for the embedded database, keys and tokens")
	s.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "HTTP address to serve the API, webhooks and metrics on")
	s.StringVar(&c.PublicURL, "public-url", "", "URL agents and jobs use to reach this server (default http://<listen>)")
	s.StringVar(&c.Database, "database", "", "postgres://… to use PostgreSQL; default: SQLite at <data-dir>/nimbus.db")
	s.Env("database", "NIMBUS_DATABASE_URL")
	s.IntVar(&c.DatabaseConns, "database-max-conns", 0, "PostgreSQL connections at most (default 4 per CPU, at least 8)")
	s.StringVar(&c.MasterKeyFile, "master-key-file", "", "file of master keys sealing secrets at rest (default <data-dir>/master.key, created if absent)")
	s.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	s.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	s.DurationVar(&c.LeaseTTL, "lease-ttl", d.LeaseTTL, "how long a job lease lives without renewal")
	s.IntVar(&c.MaxAttempts, "max-attempts", d.MaxAttempts, "leases that may expire under a job before it fails")
	s.DurationVar(&c.DefaultTimeout, "default-job-timeout", d.DefaultTimeout, "run time limit of a job that sets none")
	s.DurationVar(&c.MaxTimeout, "max-job-timeout", d.MaxTimeout, "largest run time limit a job may ask for")
	s.Float64Var(&c.OrgJobRate, "org-job-rate", d.OrgJobRate, "new jobs per second per org before further ones are deferred (0: no limit)")
	s.IntVar(&c.OrgJobBurst, "org-job-burst", d.OrgJobBurst, "jobs an org may create at once before the rate applies")
	c.MaxLogBytes = logs.DefaultConfig().MaxBytes
	s.Var(config.SizeValue{Size: &c.MaxLogBytes}, "max-log-size", "output kept per job; past it the log ends with a notice (0: no limit)")
	c.LogBatch = logs.DefaultBatchConfig()
	c.LogBatch.Lines, c.LogBatch.Bytes = 0, 0
	s.IntVar(&c.LogBatch.Lines, "log-batch-lines", 0, fmt.Sprintf("log lines that make a batch written to the log store at once (0: %d for the database, whose writes hold its only writer; %d for ClickHouse, which wants large inserts)", logs.DefaultBatchConfig().Lines, logs.ClickHouseBatchLines))
	s.Var(config.SizeValue{Size: &c.LogBatch.Bytes}, "log-batch-size", fmt.Sprintf("bytes of log uploads that make a batch written at once (0: %d MiB for the database, %d MiB for ClickHouse)", logs.DefaultBatchConfig().Bytes>>20, logs.ClickHouseBatchBytes>>20))
	s.DurationVar(&c.LogBatch.Delay, "log-batch-delay", c.LogBatch.Delay, "longest an upload waits for others to share its batch (0: none beyond the write before it)")
	s.StringVar(&c.LogStore, "log-store", "", "where jobs' output goes: empty for the database, or ClickHouse: http://[user[:password]@]host:8123/database")
	s.DurationVar(&c.LogRetention, "log-retention", 0, "with ClickHouse, how long jobs' output is kept, in whole days (0: forever)")
	s.Var(config.SizeValue{Size: &c.LogBatch.QueueBytes}, "log-queue-size", "bytes of log uploads queued or being written; beyond, uploads get 429 and Retry-After (0: no bound)")
	c.PoolLabels = d.Pools[0].Labels
	s.Var(config.ListValue{List: &c.PoolLabels}, "pool-labels", "runner labels this server serves: a GitHub job is taken when all its labels are among them")
	s.DurationVar(&c.SessionIdleTTL, "rbs-session-idle-ttl", 3*time.Hour, "a remote Bazel session no proxy used for this long is stopped")
	s.DurationVar(&c.RBSAgentCertTTL, "rbs-agent-cert-ttl", sessions.DefaultAgentCertTTL, "validity of agents' session tunnel certificates; agents renew them after two thirds")
	s.BoolVar(&c.RBSRequireClientCert, "rbs-require-client-cert", false, "remote Bazel proxies must present a user certificate from Nimbus's CA (mutual TLS; needs HTTPS)")
	s.StringVar(&c.TLSCertFile, "tls-cert-file", "", "serve HTTPS with this certificate (PEM; with --tls-key-file)")
	s.StringVar(&c.TLSKeyFile, "tls-key-file", "", "the key of --tls-cert-file")
	s.BoolVar(&c.TLSAuto, "tls-auto", false, "serve HTTPS with a certificate from Nimbus's own CA for --tls-hosts (clients trust <data-dir>/ca.crt)")
	s.Var(config.ListValue{List: &c.TLSHosts}, "tls-hosts", "names and addresses --tls-auto's certificate is valid for (default: localhost, 127.0.0.1, this host's name)")
	c.Limits = api.DefaultEdgeLimits()
	s.Var(config.SizeValue{Size: &c.Limits.OpenBodyBytes}, "open-body-budget", "bytes of unauthenticated request bodies (webhooks, enrollments) in flight at once; beyond, 503 at once (0: no bound)")
	s.Var(config.SizeValue{Size: &c.Limits.OpenBodyBytesPerClient}, "open-body-per-client", "the same for one client address; beyond, 429 (0: no bound)")
	s.DurationVar(&c.Limits.OpenBodyTimeout, "open-body-timeout", c.Limits.OpenBodyTimeout, "time an unauthenticated request's body may take to arrive (0: no limit)")
	s.Var(config.SizeValue{Size: &c.Limits.MinBodyRate}, "min-body-rate", "bytes per second every request body must average after --body-rate-grace; slower ones get 408 (0: no minimum)")
	s.DurationVar(&c.Limits.BodyRateGrace, "body-rate-grace", c.Limits.BodyRateGrace, "time a request body gets before --min-body-rate applies")
	s.IntVar(&c.Limits.MaxConnsPerClient, "max-conns-per-client", c.Limits.MaxConnsPerClient, "open connections of one client address at most; 0 behind a reverse proxy, which should bound them itself (0: no bound)")
	s.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics on this address instead of --listen (e.g. 127.0.0.1:9090); with TLS on and no --metrics-token-file, /metrics is only served here")
	s.StringVar(&c.MetricsTokenFile, "metrics-token-file", "", "file holding a bearer token that /metrics asks for, wherever it is served")
	s.StringVar(&c.CacheDir, "cache-dir", "", "build cache storage (default <data-dir>/cache)")
	c.CacheMaxBytes = 20 << 30
	s.Var(config.SizeValue{Size: &c.CacheMaxBytes}, "cache-max-size", "bound of the build cache on disk (0: none)")
	s.BoolVar(&c.CacheCompress, "cache-compress", true, "store the build cache's CAS blobs that compress with zstd at rest (served as they are to clients asking for zstd); false: store every blob as it came")
	s.StringVar(&c.CacheGRPCListen, "cache-grpc-listen", "127.0.0.1:9092", "address of the Bazel remote cache gRPC API (REAPI v2), plaintext h2c; empty: off")
	s.Var(config.SizeValue{Size: &c.CacheQuotaSoft}, "cache-org-soft-quota", "bytes an org may keep before its least recently used blobs are evicted (0: none)")
	s.Var(config.SizeValue{Size: &c.CacheQuotaHard}, "cache-org-hard-quota", "bytes beyond which an org's writes are refused (0: none)")
	s.StringVar(&c.CacheS3.Endpoint, "cache-s3-endpoint", "", "S3-compatible endpoint URL for a storage tier behind the cache's disk (empty: no S3 tier)")
	s.StringVar(&c.CacheS3.Region, "cache-s3-region", "us-east-1", "S3 region")
	s.StringVar(&c.CacheS3.Bucket, "cache-s3-bucket", "", "S3 bucket")
	s.StringVar(&c.CacheS3.Prefix, "cache-s3-prefix", "", "prefix of every object key in the bucket")
	s.StringVar(&c.CacheS3.AccessKeyID, "cache-s3-access-key-id", "", "S3 access key id")
	s.StringVar(&c.CacheS3.SecretAccessKey, "cache-s3-secret-access-key", "", "S3 secret key: set it as NIMBUS_CACHE_S3_SECRET_ACCESS_KEY or in the config file, not on the command line")
	s.BoolVar(&c.CacheS3.PathStyle, "cache-s3-path-style", false, "address the bucket in the URL path (MinIO, versitygw) rather than the host name")
	s.StringVar(&c.RegistryConfigFile, "registry-config", "", "YAML file of the registry cache: upstreams, per-org policies, credentials and signature keys (see docs/registry.md)")
	c.RegistryUpstreams = []string{"docker.io=https://registry-1.docker.io", "ghcr.io=https://ghcr.io", "quay.io=https://quay.io"}
	s.Var(config.ListValue{List: &c.RegistryUpstreams}, "registry-upstreams", "registries the registry cache pulls through, as name=url (HOST/<name>/<repository>); added to the config file's, a same name replacing it")
	s.StringVar(&c.RegistryMirror, "registry-mirror", "", "upstream serving names without an upstream prefix (Docker's registry-mirrors); default docker.io when it is an upstream")
	s.DurationVar(&c.RegistryTagTTL, "registry-tag-ttl", 5*time.Minute, "how long a pulled-through tag is served before the upstream is asked again (HEAD)")
	s.StringVar(&c.EgressPolicyFile, "egress-policy-file", "", "YAML rules giving jobs their egress policy by org, label and source (see docs/sandbox-network.md)")
	s.StringVar(&c.EgressMode, "egress-mode", "", "egress mode of API jobs: offline (default: the platform's caches only), allow-list or audit; overrides the rules file's default")
	s.Var(config.ListValue{List: &c.EgressAllow}, "egress-allow", "names (example.com, *.example.com) and CIDRs API jobs may reach; added to the rules file's default")
	s.StringVar(&c.DashboardConfig, "dashboard-config", "", "YAML file of the dashboard's sign-in: OpenID Connect providers, GitHub sign-in, rules mapping people to org roles, session bounds (see docs/dashboard.md)")
	s.Int64Var(&c.GitHubAppID, "github-app-id", 0, "GitHub App id (JIT runner configs are minted with it)")
	s.StringVar(&c.GitHubClientID, "github-client-id", "", "GitHub App client id (used as the JWT issuer when set)")
	s.StringVar(&c.GitHubAppKeyFile, "github-app-key-file", "", "GitHub App private key (PEM); stored sealed in the database, so later starts need no file")
	s.StringVar(&c.GitHubAPIURL, "github-api-url", "https://api.github.com", "GitHub API root (GHES: https://HOST/api/v3)")
	s.Int64Var(&c.GitHubRunnerGroupID, "github-runner-group-id", 1, "runner group of the ephemeral runners")
	s.DurationVar(&c.GitHubRedeliverInterval, "github-redeliver-interval", 5*time.Minute, "how often to ask GitHub to redeliver workflow_job webhooks that failed (e.g. while the server was down); 0: never")
}

// Validate checks the settings and fills derived ones.
func (c *ServerConfig) Validate() error {
	if c.DataDir == "" {
		return errors.New("data-dir: must be set")
	}
	if c.Database == "" {
		c.Database = filepath.Join(c.DataDir, "nimbus.db")
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(c.DataDir, "cache")
	}
	if c.EgressPolicyFile != "" {
		r, err := egress.LoadRules(c.EgressPolicyFile)
		if err != nil {
			return fmt.Errorf("egress-policy-file: %w", err)
		}
		c.egressRules = r
	}
	if c.EgressMode != "" {
		m, err := netpolicy.ParseMode(c.EgressMode)
		if err != nil {
			return fmt.Errorf("egress-mode: %w", err)
		}
		c.egressRules.Default.Mode = m
	}
	c.egressRules.Default.Allow = append(c.egressRules.Default.Allow, c.EgressAllow...)
	if err := c.egressRules.Validate(); err != nil {
		return fmt.Errorf("egress-allow: %w", err)
	}
	if c.DashboardConfig != "" {
		d, err := sso.Load(c.DashboardConfig)
		if err != nil {
			return fmt.Errorf("dashboard-config: %w", err)
		}
		c.dashboard = d
	}
	if c.MetricsTokenFile != "" {
		b, err := os.ReadFile(c.MetricsTokenFile)
		if err != nil {
			return fmt.Errorf("metrics-token-file: %w", err)
		}
		if c.metricsToken = strings.TrimSpace(string(b)); len(c.metricsToken) < 16 {
			return errors.New("metrics-token-file: the token must have at least 16 characters")
		}
	}
	if l := c.Limits; l.OpenBodyBytes < 0 || l.OpenBodyBytesPerClient < 0 || l.OpenBodyTimeout < 0 || l.MinBodyRate < 0 || l.BodyRateGrace < 0 || l.MaxConnsPerClient < 0 {
		return errors.New("open-body-budget, open-body-per-client, open-body-timeout, min-body-rate, body-rate-grace, max-conns-per-client: must not be negative")
	}
	if err := c.validateRegistry(); err != nil {
		return err
	}
	if c.CacheQuotaHard != 0 && c.CacheQuotaSoft > c.CacheQuotaHard {
		return fmt.Errorf("cache-org-soft-quota %d is above cache-org-hard-quota %d", c.CacheQuotaSoft, c.CacheQuotaHard)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("tls-cert-file and tls-key-file go together")
	}
	if c.TLSAuto && c.TLSCertFile != "" {
		return errors.New("tls-auto and tls-cert-file: choose one")
	}
	if c.RBSRequireClientCert && !c.TLS() {
		return errors.New("rbs-require-client-cert needs HTTPS: --tls-auto or --tls-cert-file")
	}
	if c.PublicURL == "" {
		c.PublicURL = c.scheme() + "://" + c.Listen
	}
	switch {
	case c.LeaseTTL < 2*time.Second:
		return fmt.Errorf("lease-ttl: %v is too short (at least 2s)", c.LeaseTTL)
	case c.MaxAttempts < 1:
		return fmt.Errorf("max-attempts: %d: at least 1", c.MaxAttempts)
	case c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout:
		return fmt.Errorf("default-job-timeout %v must be positive and at most max-job-timeout %v", c.DefaultTimeout, c.MaxTimeout)
	case c.OrgJobRate < 0:
		return fmt.Errorf("org-job-rate: must not be negative")
	case c.RBSAgentCertTTL != 0 && c.RBSAgentCertTTL <= 5*time.Minute:
		// Certificates start 5 minutes in the past, for clock skew.
		return fmt.Errorf("rbs-agent-cert-ttl: %v is too short: certificates are backdated 5m for clock skew, so it must be longer", c.RBSAgentCertTTL)
	case c.MaxLogBytes < 0:
		return fmt.Errorf("max-log-size: must not be negative")
	case c.LogBatch.Lines < 0 || c.LogBatch.Bytes < 0 || c.LogBatch.Delay < 0 || c.LogBatch.QueueBytes < 0:
		return fmt.Errorf("log-batch-lines, log-batch-size, log-batch-delay, log-queue-size: must not be negative")
	case c.LogRetention < 0 || c.LogRetention > 0 && c.LogRetention < 24*time.Hour:
		return fmt.Errorf("log-retention: 0 (forever) or at least 24h")
	case c.LogRetention > 0 && c.LogStore == "":
		return fmt.Errorf("log-retention: needs --log-store (ClickHouse); the database keeps jobs' output with the jobs")
	case c.LogStore != "" && !strings.HasPrefix(c.LogStore, "http://") && !strings.HasPrefix(c.LogStore, "https://"):
		return fmt.Errorf("log-store: %q: want http://[user[:password]@]host:port/database (ClickHouse's HTTP interface)", c.LogStore)
	case c.LogBatch.Delay > 10*time.Second:
		return fmt.Errorf("log-batch-delay: at most 10s (an agent waits that long for its acknowledgement)")
	case c.LogLevel != "debug" && c.LogLevel != "info" && c.LogLevel != "warn" && c.LogLevel != "error":
		return fmt.Errorf("log-level: %q: debug, info, warn or error", c.LogLevel)
	case c.LogFormat != "text" && c.LogFormat != "json":
		return fmt.Errorf("log-format: %q: text or json", c.LogFormat)
	case c.GitHubRedeliverInterval < 0:
		return fmt.Errorf("github-redeliver-interval: must not be negative")
	case c.GitHubAppID < 0:
		return fmt.Errorf("github-app-id: must not be negative")
	}
	labels, err := jobs.NormalizeLabels(c.PoolLabels)
	if err != nil {
		return fmt.Errorf("pool-labels: %w", err)
	}
	c.PoolLabels = labels
	return nil
}

func (c *ServerConfig) jobsConfig() jobs.Config {
	d := jobs.DefaultConfig()
	d.LeaseTTL, d.MaxAttempts, d.DefaultTimeout, d.MaxTimeout = c.LeaseTTL, c.MaxAttempts, c.DefaultTimeout, c.MaxTimeout
	d.OrgJobRate, d.OrgJobBurst = c.OrgJobRate, c.OrgJobBurst
	d.Pools = []jobs.Pool{{Name: "default", Labels: c.PoolLabels}}
	return d
}

// metricsAccess is where /metrics is served: on the API's listener
// without TLS or with a token, else only on --metrics-listen.
func (c *ServerConfig) metricsAccess() api.MetricsAccess {
	m := api.MetricsAccess{Token: c.metricsToken}
	switch {
	case c.MetricsListen != "":
		m.Elsewhere = "metrics are served on the --metrics-listen address, not here"
	case c.TLS() && c.metricsToken == "":
		m.Elsewhere = "metrics are not served on the HTTPS listener without a token: set --metrics-listen or --metrics-token-file"
	}
	return m
}

// validateRegistry builds the registry's configuration: the file, then
// the flags' upstreams (a same name replacing the file's), mirror and TTL.
func (c *ServerConfig) validateRegistry() error {
	var rc registry.Config
	if c.RegistryConfigFile != "" {
		var err error
		if rc, err = registry.LoadConfig(c.RegistryConfigFile); err != nil {
			return fmt.Errorf("registry-config: %w", err)
		}
	}
	for _, f := range c.RegistryUpstreams {
		u, err := registry.ParseUpstreamFlag(f)
		if err != nil {
			return fmt.Errorf("registry-upstreams: %w", err)
		}
		replaced := false
		for i := range rc.Upstreams {
			if rc.Upstreams[i].Name == u.Name {
				rc.Upstreams[i].URL, replaced = u.URL, true
			}
		}
		if !replaced {
			rc.Upstreams = append(rc.Upstreams, u)
		}
	}
	if c.RegistryMirror != "" {
		rc.Mirror = c.RegistryMirror
	}
	if rc.Mirror == "" {
		for _, u := range rc.Upstreams {
			if u.Name == "docker.io" {
				rc.Mirror = u.Name
			}
		}
	}
	if c.RegistryTagTTL == 0 {
		c.RegistryTagTTL = 5 * time.Minute
	}
	if c.RegistryTagTTL < 0 {
		return fmt.Errorf("registry-tag-ttl: must be positive")
	}
	rc.TagTTL = c.RegistryTagTTL
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	c.registryConfig = rc
	return nil
}

// TLS reports whether the server serves HTTPS.
func (c *ServerConfig) TLS() bool { return c.TLSAuto || c.TLSCertFile != "" }

func (c *ServerConfig) scheme() string {
	if c.TLS() {
		return "https"
	}
	return "http"
}
