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

// Warm pool flags: counts within the agent's slots, IMAGE=N well formed;
// each error names its flag.
func TestAgentWarmFlags(t *testing.T) {
	parse := func(args ...string) (AgentConfig, error) {
		var c AgentConfig
		s := config.NewSet("nimbus agent", io.Discard)
		c.Register(s, true)
		if err := s.Parse(append([]string{"--server", "http://x", "--state-dir", t.TempDir(), "--max-jobs", "2"}, args...), func(string) string { return "" }, "config"); err != nil {
			return c, err
		}
		return c, c.Validate(true)
	}
	c, err := parse("--docker-warm", "registry.example/app:1=2,busybox@sha256:abc=1", "--docker-daemon-warm", "2")
	if err != nil {
		t.Fatal(err)
	}
	warm, err := c.dockerWarm(executor.Limits{Memory: 1 << 30, Disk: 1 << 30})
	if err != nil || len(warm) != 2 || warm[0].Image != "registry.example/app:1" || warm[0].Slots != 2 ||
		warm[1].Image != "busybox@sha256:abc" || warm[1].Slots != 1 || warm[0].Limits != (executor.Limits{Memory: 1 << 30}) {
		t.Fatalf("docker-warm: %+v %v", warm, err)
	}
	for _, bad := range [][]string{
		{"--docker-warm", "app"}, {"--docker-warm", "=1"}, {"--docker-warm", "app=0"}, {"--docker-warm", "app=3"}, {"--docker-warm", "app=x"},
		{"--docker-daemon-warm", "3"}, {"--docker-daemon-warm", "-1"}, {"--docker-daemon-warm", "1", "--docker-label", ""},
	} {
		if _, err := parse(bad...); err == nil || !strings.HasPrefix(err.Error(), strings.TrimPrefix(bad[0], "--")+":") {
			t.Errorf("%v: %v, want an error naming the flag", bad, err)
		}
	}
}
