package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

func validConfig() Config {
	return Config{
		Server:   "https://nimbus.example",
		StateDir: "/var/lib/nimbus-agent",
		Name:     "builder-1",
		Labels:   []string{"linux", "x64"},
		Executor: idle,
	}
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // what the error must say, one per wrong field
	}{
		{"valid", func(*Config) {}, nil},
		{"no labels: all the enrollment allows", func(c *Config) { c.Labels = nil }, nil},
		{"empty", func(c *Config) { *c = Config{} }, []string{
			"server: required", "state dir: required", "name: required", "executor: required",
		}},
		{"server not a URL", func(c *Config) { c.Server = "nimbus.example:8080" }, []string{`server: "nimbus.example:8080" is not an http(s) URL`}},
		{"relative state dir", func(c *Config) { c.StateDir = "state" }, []string{`state dir: "state" must be an absolute path`}},
		{"bad labels", func(c *Config) { c.Labels = []string{"linux", "", "a b", "linux"} }, []string{
			`labels: label 1 ("") is empty`, `labels: label 2 ("a b") is empty or contains a space`, `labels: "linux" is listed twice`,
		}},
		{"negative max jobs", func(c *Config) { c.MaxJobs = -1 }, []string{"max jobs: -1: must be at least 1"}},
		{"runner dir without the rest", func(c *Config) { c.RunnerDir = "/opt/actions-runner" }, []string{
			"runner clones: required", "runner uids: required with a runner dir",
		}},
		{"scratch dir /", func(c *Config) { c.ScratchDirs = []string{"/"} }, []string{"scratch dirs[0]: must not be /"}},
		{"job limits", func(c *Config) { c.JobLimits = executor.Limits{Memory: 2 << 30, Pids: 1} }, []string{"job limits: pids limit 1: want 0 (none) or at least 16"}},
		{"lease wait too long", func(c *Config) { c.LeaseWait = 2 * time.Minute }, []string{"lease wait: 2m0s: must be at most 1m0s"}},
		{"negative knob", func(c *Config) { c.SyncWait = -time.Second }, []string{"sync wait: -1s: must not be negative"}},
		{"chunk too large", func(c *Config) { c.MaxChunk = 1 << 20 }, []string{"max chunk: 1048576: must be between 1024 and 524288 bytes"}},
		{"unacked below a chunk", func(c *Config) { c.MaxUnacked = 2048; c.MaxChunk = 4096 }, []string{"max unacked: 2048: must be at least max chunk (4096)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			_, err := New(c)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted the config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := validConfig().withDefaults()
	got := []any{c.MaxJobs, c.LeaseWait, c.SyncWait, c.IdleHeartbeat, c.FlushInterval, c.MaxChunk, c.MaxUnacked, c.LogDrainTimeout}
	want := []any{1, 30 * time.Second, 20 * time.Second, 15 * time.Second, 25 * time.Millisecond, 64 << 10, 256 << 20, 30 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if c.HTTPClient == nil || c.Logger == nil {
		t.Error("no default HTTP client or logger")
	}
}
