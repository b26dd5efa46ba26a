package cache_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/cache/jobcred"
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
	envm := cache.JobEnv(e.httpURL, "", token, true)
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

// TestActionsCacheScopedByRef drives the real @actions/cache client with
// job credentials minted by jobcred's rules for jobs of different refs:
// a ref restores its own entries, then its base branch's, then the default
// branch's; a pull request's entries are visible to that pull request
// only; and a pull request from a fork (read-only) cannot save an entry
// that a default-branch job would then restore.
func TestActionsCacheScopedByRef(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		name := "v1"
		if v2 {
			name = "v2"
		}
		t.Run(name, func(t *testing.T) {
			e := startEnv(t, cache.Config{})
			main := "refs/heads/main"
			job := func(id string, src jobcred.Source) *actionsClient {
				g := jobcred.Decide(src, jobcred.Trust{}, func(access.Action) bool { return true })
				tok := "job-token-" + id
				e.tokens.Add(tok, auth.Principal{Kind: auth.KindJob, Org: "org-a", ID: id, Scopes: g.Scopes()})
				return newActionsClient(t, e, tok, v2)
			}
			onMain := job("main", jobcred.Source{Ref: main, DefaultRef: main})
			onFeature := job("feature", jobcred.Source{Ref: "refs/heads/feature", DefaultRef: main})
			pr7 := job("pr7", jobcred.Source{Ref: "refs/pull/7/merge", BaseRef: "refs/heads/feature", DefaultRef: main})
			pr8 := job("pr8", jobcred.Source{Ref: "refs/pull/8/merge", BaseRef: main, DefaultRef: main})
			fork := job("fork", jobcred.Source{Ref: "refs/pull/9/merge", BaseRef: main, DefaultRef: main, Fork: true})

			save := func(c *actionsClient, key string) *string {
				dir := filepath.Join(c.work, "deps")
				os.MkdirAll(dir, 0o755)
				os.WriteFile(filepath.Join(dir, "lib.txt"), []byte("saved as "+key+"\n"), 0o644)
				return c.run("save", "deps", key)
			}
			restore := func(c *actionsClient, key string, restoreKeys ...string) string {
				os.RemoveAll(filepath.Join(c.work, "deps"))
				k := c.run(append([]string{"restore", "deps", key}, restoreKeys...)...)
				if k == nil {
					return ""
				}
				b, err := os.ReadFile(filepath.Join(c.work, "deps", "lib.txt"))
				if err != nil || string(b) != "saved as "+*k+"\n" {
					t.Fatalf("restored %s: content %q, %v", *k, b, err)
				}
				return *k
			}
			for _, s := range []struct {
				c   *actionsClient
				key string
			}{{onMain, "deps-main"}, {onFeature, "deps-feature"}, {pr7, "deps-pr7"}} {
				if k := save(s.c, s.key); k == nil {
					t.Fatalf("save %s: refused", s.key)
				}
			}
			for _, tc := range []struct {
				who  string
				c    *actionsClient
				want string
			}{
				{"the default branch: its own only", onMain, "deps-main"},
				{"a branch: its own before the default branch's", onFeature, "deps-feature"},
				{"a pull request: its own first", pr7, "deps-pr7"},
				{"another pull request: its base (the default branch)", pr8, "deps-main"},
				{"a fork's pull request: its base", fork, "deps-main"},
			} {
				if got := restore(tc.c, "deps-none", "deps-"); got != tc.want {
					t.Errorf("%s restored %q, want %q", tc.who, got, tc.want)
				}
			}
			// A pull request reads its base branch before the default
			// branch, and another pull request's entries never.
			if got := restore(pr7, "deps-pr8", "deps-f", "deps-m"); got != "deps-feature" {
				t.Errorf("pull request 7 restored %q, want its base's deps-feature", got)
			}
			if got := restore(pr8, "deps-pr7"); got != "" {
				t.Errorf("pull request 8 restored pull request 7's entry %q", got)
			}
			if got := restore(onMain, "deps-pr7", "deps-feature"); got != "" {
				t.Errorf("the default branch restored a pull request's or a branch's entry %q", got)
			}
			// The attack: a fork saves under the key the default branch
			// restores next. Refused; the default branch restores its own.
			if k := save(fork, "deps-main-2"); k != nil {
				t.Errorf("a fork's pull request saved %s", *k)
			}
			if got := restore(onMain, "deps-main-2", "deps-main"); got != "deps-main" {
				t.Errorf("the default branch restored %q after a fork's save, want its own deps-main", got)
			}
		})
	}
}
