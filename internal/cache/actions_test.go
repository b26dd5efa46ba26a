package cache_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache"
)

const actionsClientDir = "actionscache/testdata/client"

// actionsClient runs the @actions/cache driver script.
type actionsClient struct {
	t    *testing.T
	env  []string
	work string
}

func newActionsClient(t *testing.T, e *env, token string, v2 bool) *actionsClient {
	t.Helper()
	needTool(t, "/usr/bin/node", "apt-get install nodejs")
	if _, err := os.Stat(filepath.Join(actionsClientDir, "node_modules/@actions/cache")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node modules missing: run npm ci --prefix internal/cache/%s", actionsClientDir)
		}
		t.Skipf("node modules missing: run npm ci --prefix internal/cache/%s", actionsClientDir)
	}
	work := t.TempDir()
	envm := cache.JobEnv(e.httpURL, "", token)
	vars := []string{"PATH=/usr/bin:/bin", "HOME=" + work, "RUNNER_TEMP=" + filepath.Join(work, "tmp"), "GITHUB_WORKSPACE=" + work}
	for k, v := range envm {
		if k == "ACTIONS_CACHE_SERVICE_V2" && !v2 {
			continue
		}
		vars = append(vars, k+"="+v)
	}
	os.MkdirAll(filepath.Join(work, "tmp"), 0o755)
	return &actionsClient{t: t, env: vars, work: work}
}

func (c *actionsClient) run(args ...string) (key *string) {
	c.t.Helper()
	script, _ := filepath.Abs(filepath.Join(actionsClientDir, "drive.js"))
	cmd := exec.Command("/usr/bin/node", append([]string{script}, args...)...)
	cmd.Dir = c.work
	cmd.Env = c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		c.t.Fatalf("node %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	var out struct{ Key *string }
	lines := bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n"))
	if err := json.Unmarshal(lines[len(lines)-1], &out); err != nil {
		c.t.Fatalf("node %v: output %q: %v\nstderr:\n%s", args, stdout.String(), err, stderr.String())
	}
	return out.Key
}

// TestActionsCacheClient saves and restores with the real @actions/cache
// package over both protocols: exact hit, restore-keys prefix match, a
// miss, and another org's token that sees nothing.
func TestActionsCacheClient(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		name := "v1"
		if v2 {
			name = "v2"
		}
		t.Run(name, func(t *testing.T) {
			e := startEnv(t, cache.Config{})
			c := newActionsClient(t, e, tokJobA, v2)
			dir := filepath.Join(c.work, "deps")
			os.MkdirAll(dir, 0o755)
			content := bytes.Repeat([]byte("cached dependency "+name+"\n"), 1000)
			os.WriteFile(filepath.Join(dir, "lib.txt"), content, 0o644)

			if k := c.run("save", "deps", "deps-linux-abc"); k == nil || *k != "deps-linux-abc" {
				t.Fatalf("save: %v", k)
			}
			os.RemoveAll(dir)
			if k := c.run("restore", "deps", "deps-linux-abc"); k == nil || *k != "deps-linux-abc" {
				t.Fatalf("exact restore matched %v", k)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "lib.txt")); err != nil || !bytes.Equal(got, content) {
				t.Fatalf("restored file: %v", err)
			}
			os.RemoveAll(dir)
			if k := c.run("restore", "deps", "deps-linux-zzz", "deps-linux-"); k == nil || *k != "deps-linux-abc" {
				t.Fatalf("prefix restore matched %v, want deps-linux-abc", k)
			}
			if _, err := os.Stat(filepath.Join(dir, "lib.txt")); err != nil {
				t.Fatalf("prefix restore did not restore: %v", err)
			}
			if k := c.run("restore", "deps", "other-key"); k != nil {
				t.Fatalf("miss matched %v", *k)
			}
			other := newActionsClient(t, e, tokCIB, v2)
			if k := other.run("restore", "deps", "deps-linux-abc", "deps-"); k != nil {
				t.Fatalf("another org restored %v", *k)
			}
		})
	}
}
