package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// idle is an executor for tests that run no job.
var idle = funcExecutor(func(context.Context, executor.Spec) int { return 0 })

func TestEnrollsOnceThenReusesTheSavedCredential(t *testing.T) {
	t.Parallel()
	f := newFakeControlPlane(30 * time.Second)
	url := f.serve(t)
	cfg, _ := testConfig(t, url, f, idle)

	first := startAgent(t, cfg)
	f.waitFor(t, "registration", func() bool { return f.agentsCopy()["agent-1"].registered == 1 })
	first.GracefulStop()
	if err := first.wait(t); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	path := filepath.Join(cfg.StateDir, credentialFileName)
	for p, want := range map[string]os.FileMode{cfg.StateDir: 0o700, path: 0o600} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %04o", p, info.Mode().Perm(), err, want)
		}
	}
	saved, err := credentialFile{dir: cfg.StateDir}.load()
	if err != nil {
		t.Fatal(err)
	}
	if saved.AgentID != "agent-1" || saved.Server != url || saved.Token == "" {
		t.Errorf("saved credential %+v", saved)
	}

	// Restarted without the join token (spent anyway): the saved
	// credential is used; no second enrollment. The stopped agent
	// abandoned its lease poll; the server may notice only a moment later,
	// and one agent id may have one poll in flight.
	f.waitFor(t, "the abandoned lease poll to end", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.leasePolls == 0
	})
	cfg.JoinToken = ""
	second := startAgent(t, cfg)
	f.waitFor(t, "second registration", func() bool { return f.agentsCopy()["agent-1"].registered == 2 })
	second.GracefulStop()
	if err := second.wait(t); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if n, agents := f.callCount("enroll"), len(f.agentsCopy()); n != 1 || agents != 1 {
		t.Errorf("%d enrollments, %d agents; want 1 and 1", n, agents)
	}
	f.checkNoViolations(t)
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	f := newFakeControlPlane(30 * time.Second)
	url := f.serve(t)
	spent := f.joinToken("linux")
	base, _ := testConfig(t, url, f, idle)
	base.JoinToken = spent
	enrolling := startAgent(t, base)
	f.waitFor(t, "registration", func() bool { return f.agentsCopy()["agent-1"].registered == 1 })
	enrolling.GracefulStop()
	if err := enrolling.wait(t); err != nil {
		t.Fatalf("enrolling Run: %v", err)
	}
	enrolledDir := base.StateDir

	tests := []struct {
		name   string
		modify func(t *testing.T, c *Config)
		want   string
	}{{
		name:   "no credential and no join token",
		modify: func(t *testing.T, c *Config) { c.JoinToken = "" },
		want:   "no credential in DIR and no join token: pass --join-token",
	}, {
		name:   "spent join token",
		modify: func(t *testing.T, c *Config) { c.JoinToken = spent },
		want:   "enroll: the server refused the join token",
	}, {
		name: "credential for another server",
		modify: func(t *testing.T, c *Config) {
			c.JoinToken = ""
			writeCredential(t, c.StateDir, credential{Server: "https://other.example", AgentID: "a", Token: "t", ExpiresAt: time.Now().Add(time.Hour)})
		},
		want: "no credential for " + url + " in DIR (it holds one for https://other.example) and no join token",
	}, {
		name: "expired credential",
		modify: func(t *testing.T, c *Config) {
			c.JoinToken = ""
			writeCredential(t, c.StateDir, credential{Server: url, AgentID: "a", Token: "t", ExpiresAt: time.Now().Add(-time.Hour)})
		},
		want: "the credential in DIR expired at",
	}, {
		name: "credential readable by others",
		modify: func(t *testing.T, c *Config) {
			c.StateDir = enrolledDir
			if err := os.Chmod(filepath.Join(enrolledDir, credentialFileName), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(filepath.Join(enrolledDir, credentialFileName), 0o600) })
		},
		want: "must not be accessible to others",
	}, {
		name: "revoked credential",
		modify: func(t *testing.T, c *Config) {
			c.JoinToken = ""
			writeCredential(t, c.StateDir, credential{Server: url, AgentID: "a", Token: "revoked", ExpiresAt: time.Now().Add(time.Hour)})
		},
		want: "the server refused the agent's credential (agent disabled or credential revoked)",
	}, {
		name: "labels the enrollment does not allow",
		modify: func(t *testing.T, c *Config) {
			c.StateDir = enrolledDir
			c.Labels = []string{"linux", "gpu"}
		},
		want: "labels [gpu] are not allowed by this agent's enrollment (allowed: [linux])",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.StateDir = filepath.Join(t.TempDir(), "state")
			tt.modify(t, &cfg)
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = a.Run(t.Context())
			want := strings.ReplaceAll(tt.want, "DIR", cfg.StateDir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Run: %v; want an error containing %q", err, want)
			}
		})
	}
}

func TestGracefulStopDuringStartUp(t *testing.T) {
	t.Parallel()
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, idle)
	f.setDown(true) // enrollment is retried until the server answers
	ra := startAgent(t, cfg)
	f.waitFor(t, "an enrollment attempt", func() bool { return f.callCount("enroll") > 0 })
	ra.GracefulStop()
	if err := ra.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func writeCredential(t *testing.T, dir string, c credential) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, credentialFileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialIsRefreshedAtTwoThirdsOfItsLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeControlPlane(30 * time.Second)
		f.credTTL = 30 * time.Minute
		cfg, _ := testConfig(t, "http://nimbus.test", f, idle)
		cfg.HTTPClient = &http.Client{Transport: handlerTransport{f}}
		ra := startAgent(t, cfg)
		load := func() credential {
			c, err := credentialFile{dir: cfg.StateDir}.load()
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		synctest.Wait()
		enrolled := load()

		time.Sleep(20*time.Minute - time.Second)
		synctest.Wait()
		if n := f.callCount("refresh"); n != 0 {
			t.Errorf("%d refreshes before two thirds of the lifetime", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		refreshed := load()
		if n := f.callCount("refresh"); n != 1 || refreshed.Token == enrolled.Token {
			t.Fatalf("%d refreshes, saved credential changed: %v; want 1 and true", n, refreshed.Token != enrolled.Token)
		}
		if diff := cmp.Diff(enrolled.AgentID, refreshed.AgentID); diff != "" {
			t.Errorf("agent id (-want +got):\n%s", diff)
		}

		// Hours later the agent still works: each credential was replaced
		// before it expired (the fake refuses expired ones, which would
		// stop the agent), and the newest is in use.
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		if ra.returned() {
			t.Fatalf("Run returned: %v", ra.err)
		}
		if n := f.callCount("refresh"); n < 9 || n > 10 {
			t.Errorf("%d refreshes in 3h20m with a 30m credential; want one every 20m", n)
		}
		time.Sleep(30 * time.Second) // a heartbeat or two
		synctest.Wait()
		f.mu.Lock()
		last := f.lastBearer
		f.mu.Unlock()
		if last != load().Token {
			t.Error("the agent does not use the credential it saved last")
		}
	})
}

func TestLeftoversOfACrashedAgentAreRemovedAtStart(t *testing.T) {
	t.Parallel()
	f := newFakeControlPlane(30 * time.Second)
	cfg, _ := testConfig(t, f.serve(t), f, idle)
	scratch := t.TempDir()
	keep := filepath.Join(t.TempDir(), "not-scratch")
	for _, d := range []string{
		filepath.Join(scratch, "job-1-abc/sub"),
		filepath.Join(scratch, "job-2-def"),
		keep,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	// A job may have left a directory it cannot be cleaned out of easily.
	if err := os.Chmod(filepath.Join(scratch, "job-1-abc/sub"), 0o500); err != nil {
		t.Fatal(err)
	}
	cfg.ScratchDirs = []string{scratch, filepath.Join(t.TempDir(), "missing")}
	ra := startAgent(t, cfg)
	f.waitFor(t, "registration", func() bool { return f.agentsCopy()["agent-1"].registered == 1 })
	ra.GracefulStop()
	if err := ra.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if entries, err := os.ReadDir(scratch); err != nil || len(entries) != 0 {
		t.Errorf("scratch dir holds %v (%v); want it empty", entries, err)
	}
	if _, err := os.Stat(filepath.Join(keep, "f")); err != nil {
		t.Errorf("a file outside the scratch dirs: %v", err)
	}
}
