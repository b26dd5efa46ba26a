package app_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A developer's own `bazel build` runs on an agent through the whole
// product: `nimbus rbs init` against the control plane, the proxy as the
// javabase, the control plane scheduling the session on the agent that
// offers the same Bazel, the agent's sandboxed Bazel server, outputs
// brought back; then `nimbus ctl sessions` sees and stops the session.
func TestE2ERemoteBazelThroughControlPlane(t *testing.T) {
	needSandbox(t)
	testenv.NeedCommand(t, "bazel", "apt-get install bazel-bootstrap")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "remote Bazel sandboxes need root for their uids")
	}
	ctx := context.Background()
	// HTTPS from Nimbus's own CA, and mutual TLS required of proxies.
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) { c.TLSAuto, c.RBSRequireClientCert = true, true })
	root := apptest.SharedDir(t, "rbs")
	storage := filepath.Join(root, "storage")
	h.StartAgent(t, "bazel-agent", func(c *app.AgentConfig) {
		c.RBSListen, c.RBSStorageRoot, c.RBSMaxSessions, c.RBSInstallBase, c.RBSUIDBase = freePort(t), storage, 2, "/usr/share/bazel", 185000
	})
	var tok apiv1.Token
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "alice", Role: "developer"}, &tok); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(root, "alice")
	ws, home, out := filepath.Join(dev, "ws"), filepath.Join(dev, "home"), filepath.Join(dev, "out")
	for _, d := range []string{ws, home} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(ws, "WORKSPACE"), nil, 0o644)
	os.WriteFile(filepath.Join(ws, "BUILD"), []byte(`genrule(name = "hello", outs = ["hello.txt"], cmd = "echo hello from $$(hostname) > $@")`+"\n"), 0o644)
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "USER=alice"}
	// Without a client certificate the control plane refuses the proxy's
	// calls, even with a good token.
	if got := h.Client(tok.Secret); true {
		_, err := got.Do(ctx, "POST", "/api/v1/rbs/sessions:get", map[string]string{}, nil)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("GetServer without a client certificate: %v", err)
		}
	}
	init := exec.Command(nimbusBin, "rbs", "init", "--server", h.URL, "--token", tok.Secret, "--workspace", ws, "--ca-file", h.CAFile())
	init.Env = env
	if b, err := init.CombinedOutput(); err != nil {
		t.Fatalf("nimbus rbs init: %v\n%s", err, b)
	}
	rc, _ := os.ReadFile(filepath.Join(ws, ".bazelrc"))
	if !strings.Contains(string(rc), "startup --server_javabase="+filepath.Join(home, ".cache", "nimbus", "javabase")) {
		t.Fatalf(".bazelrc: %s", rc)
	}
	f, _ := os.OpenFile(filepath.Join(ws, ".bazelrc"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("startup --output_user_root=" + out + " --max_idle_secs=600\nbuild --curses=no --color=no\n")
	f.Close()
	bazel := func(args ...string) (string, int) {
		cctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, "bazel", args...)
		cmd.Dir, cmd.Env = ws, env
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		t.Logf("$ bazel %s\n%s", strings.Join(args, " "), b.String())
		if ee, ok := err.(*exec.ExitError); ok {
			return b.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("bazel: %v", err)
		}
		return b.String(), 0
	}
	t.Cleanup(func() { bazel("shutdown") })
	if outp, code := bazel("build", "//:hello"); code != 0 {
		t.Fatalf("bazel build: exit %d\n%s", code, outp)
	}
	got, err := os.ReadFile(filepath.Join(ws, "bazel-bin", "hello.txt"))
	if err != nil || !strings.HasPrefix(string(got), "hello from ") {
		t.Errorf("bazel-bin/hello.txt: %q %v", got, err)
	}
	// The build ran on the agent: its storage holds the output base.
	if ents, err := os.ReadDir(storage); err != nil || len(ents) == 0 {
		t.Errorf("agent storage %s is empty: %v", storage, err)
	}
	// A failing build's exit code comes through.
	os.WriteFile(filepath.Join(ws, "BUILD"), []byte(`genrule(name = "hello", outs = ["hello.txt"], cmd = "exit 7")`+"\n"), 0o644)
	if _, code := bazel("build", "//:hello"); code != 1 {
		t.Errorf("failing build: exit %d, want 1", code)
	}
	// The session is visible to its user, and stopping it ends the server.
	var list struct {
		Sessions []apiv1.Session `json:"sessions"`
	}
	alice := h.Client(tok.Secret)
	if _, err := alice.Do(ctx, "GET", "/api/v1/sessions", nil, &list); err != nil || len(list.Sessions) != 1 || list.Sessions[0].State != "ready" {
		t.Fatalf("sessions: %+v %v", list, err)
	}
	if _, err := alice.Do(ctx, "POST", "/api/v1/sessions/"+list.Sessions[0].ID+"/stop", struct{}{}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, func() bool {
		var s apiv1.Session
		alice.Do(ctx, "GET", "/api/v1/sessions?all=1", nil, &list)
		for _, x := range list.Sessions {
			s = x
		}
		return s.State == "stopped"
	})
}
