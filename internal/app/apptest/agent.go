package apptest

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// SharedDir returns a new directory the sandbox uids can traverse
// (t.TempDir's parents are 0700), removed when the test ends.
func SharedDir(t testing.TB, name string) string {
	t.Helper()
	d, err := os.MkdirTemp("", "nimbus-test-"+name)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o711)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// JoinToken makes a one-time join token of the default org.
func (h *Harness) JoinToken(labels ...string) string {
	h.t.Helper()
	var jt apiv1.JoinToken
	if _, err := h.Owner().Do(context.Background(), "POST", "/api/v1/agents/join-tokens", apiv1.CreateJoinToken{Labels: labels}, &jt); err != nil {
		h.t.Fatal(err)
	}
	return jt.Token
}

// StartAgent runs a real agent (bubblewrap executor) in this process until
// the test ends; cfg adjusts its configuration. It needs bubblewrap.
func (h *Harness) StartAgent(t *testing.T, name string, cfg func(*app.AgentConfig)) {
	t.Helper()
	testenv.NeedCommand(t, "bwrap", "apt-get install bubblewrap")
	labels := []string{"self-hosted", "linux", "x64", "nimbus"}
	c := app.AgentConfig{Server: h.URL, JoinToken: h.JoinToken(labels...), StateDir: t.TempDir(), WorkDir: SharedDir(t, "work"),
		Name: name, MaxJobs: 2, UIDBase: 100000 + 10*len(name), Labels: labels}
	if h.Config.TLS() {
		c.CAFile = h.CAFile()
	}
	if cfg != nil {
		cfg(&c)
	}
	if err := c.Validate(true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.NewAgent(ctx, c, Logger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent %s: %v", name, err)
		}
	})
}
