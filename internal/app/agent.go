package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/nimbus-build/nimbus/internal/agent"
	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/executor/bwrap"
)

// AgentConfig configures a host agent.
type AgentConfig struct {
	Server    string
	JoinToken string
	StateDir  string
	WorkDir   string
	Name      string
	Labels    []string
	MaxJobs   int
	RunnerDir string
	UIDBase   int
	LogLevel  string
	LogFormat string
}

// Register binds the agent's settings to flags. Within `nimbus up` the
// server and join token are not flags: the agent enrolls itself.
func (c *AgentConfig) Register(s *config.Set, standalone bool) {
	if standalone {
		s.String("config", "", "YAML file of settings (keys are these flags' names)")
		s.StringVar(&c.Server, "server", "", "control plane URL (required)")
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
	s.IntVar(&c.UIDBase, "sandbox-uid-base", bwrap.DefaultUIDBase, "as root, the job in slot n runs as host uid base+n")
}

// Validate checks the settings and fills derived ones.
func (c *AgentConfig) Validate(standalone bool) error {
	if standalone && c.Server == "" {
		return errors.New("server: required (the control plane's URL)")
	}
	if c.StateDir == "" {
		return errors.New("state-dir: required")
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

// NewAgent builds an agent with the bubblewrap executor, checking first
// that sandboxes can run here.
func NewAgent(ctx context.Context, c AgentConfig, log *slog.Logger) (*agent.Agent, error) {
	for _, d := range []string{c.WorkDir, filepath.Dir(c.WorkDir)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("work-dir: %w", err)
		}
		os.Chmod(d, 0o711)
	}
	opts := bwrap.Options{WorkRoot: filepath.Join(c.WorkDir, "jobs"), UIDBase: c.UIDBase, Logger: log}
	if err := bwrap.Check(ctx, opts); err != nil {
		return nil, fmt.Errorf("sandbox check: %w", err)
	}
	ex, err := bwrap.New(opts)
	if err != nil {
		return nil, err
	}
	cfg := agent.Config{
		Server: c.Server, StateDir: c.StateDir, JoinToken: c.JoinToken, Name: c.Name, Labels: c.Labels, MaxJobs: c.MaxJobs,
		Version: Version, Executor: ex, ScratchDirs: []string{opts.WorkRoot}, Logger: log,
	}
	if host, err := os.Hostname(); err == nil {
		cfg.Hostname = host
	}
	if c.RunnerDir != "" {
		cfg.RunnerDir, cfg.RunnerClones, cfg.RunnerUIDs = c.RunnerDir, filepath.Join(c.WorkDir, "runners"), ex.Identity
	}
	return agent.New(cfg)
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
