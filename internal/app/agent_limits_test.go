package app

import (
	"io"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/config"
	"github.com/nimbus-build/nimbus/internal/executor"
)

func TestAgentJobLimitFlags(t *testing.T) {
	parse := func(args ...string) (AgentConfig, error) {
		var c AgentConfig
		s := config.NewSet("nimbus agent", io.Discard)
		c.Register(s, true)
		if err := s.Parse(append([]string{"--server", "http://x", "--state-dir", t.TempDir()}, args...), func(string) string { return "" }, "config"); err != nil {
			return c, err
		}
		return c, c.Validate(true)
	}
	total, err := hostMemory()
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse("--max-jobs", "2")
	if err != nil {
		t.Fatal(err)
	}
	free, err := freeSpace(c.WorkDir)
	if err != nil {
		t.Fatal(err)
	}
	want := executor.Limits{Memory: total / 2 >> 20 << 20, Pids: DefaultJobPids, Disk: max(free/4*3/2>>30<<30, executor.MinDisk)}
	if got := (executor.Limits{CPUs: c.JobCPUs, Memory: c.JobMemory, Pids: c.JobPids, Disk: c.JobDisk}); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	c, err = parse("--job-cpus", "1.5", "--job-memory", "2GiB", "--job-pids", "0", "--job-disk", "20GiB")
	if err != nil {
		t.Fatal(err)
	}
	want = executor.Limits{CPUs: 1.5, Memory: 2 << 30, Disk: 20 << 30}
	if got := (executor.Limits{CPUs: c.JobCPUs, Memory: c.JobMemory, Pids: c.JobPids, Disk: c.JobDisk}); got != want {
		t.Errorf("set: %+v, want %+v", got, want)
	}
	for flag, value := range map[string]string{"job-memory": "1MiB", "job-cpus": "-2", "job-pids": "3", "job-disk": "1KiB"} {
		if _, err := parse("--"+flag, value); err == nil || !strings.HasPrefix(err.Error(), flag+":") {
			t.Errorf("--%s %s: %v, want an error naming the flag", flag, value, err)
		}
	}
}
