package bwrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// TestRunnerDirectoryClone checks workspace.CloneTree from inside a real
// sandbox: a job can create, replace and delete files of its clone of a
// runner directory, but cannot write into the files it shares with the
// source, which stays untouched.
func TestRunnerDirectoryClone(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	e := newTestExecutor(t)
	src := filepath.Join(traversableDir(t), "runner")
	files := map[string]string{
		"run.sh":                 "#!/bin/sh\necho runner $1\n",
		"config.sh":              "original\n",
		"bin/Runner.Listener":    "listener\n",
		"externals/node/VERSION": "20\n",
	}
	for name, content := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("bin/Runner.Listener", filepath.Join(src, "listener")); err != nil {
		t.Fatal(err)
	}

	slot := nextSlot()
	uid, gid := e.IDs(slot)
	dst := filepath.Join(traversableDir(t), "runner-job")
	if err := workspace.CloneTree(src, dst, uid, gid); err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, script string }{
		{"runs", `test "$(/runner/run.sh --jitconfig)" = "runner --jitconfig"`},
		{"no write in place", "! (echo tampered >> /runner/config.sh) 2>/dev/null"},
		{"no truncate in place", "! (: > /runner/bin/Runner.Listener) 2>/dev/null"},
		{"no chmod of shared files", "! chmod 777 /runner/run.sh 2>/dev/null"},
		{"create", "echo '{}' > /runner/.runner"},
		{"replace", "echo replaced > /runner/config.sh.new && mv /runner/config.sh.new /runner/config.sh"},
		{"create directories", "mkdir -p /runner/_diag/pages /runner/_work && echo log > /runner/_diag/pages/1.log"},
		{"delete", "rm /runner/externals/node/VERSION && rmdir /runner/externals/node"},
		{"symlink kept", `test "$(cat /runner/listener)" = listener`},
	}
	var script strings.Builder
	for _, c := range checks {
		script.WriteString("if ( " + c.script + " ); then echo 'ok: " + c.name + "'; else echo 'FAIL: " + c.name + "'; fi\n")
	}
	res, out := run(t, e, executor.Spec{
		JobID: "runner", Argv: sh(script.String()), Slot: slot,
		Binds: []executor.Bind{{Source: dst, Target: "/runner"}},
	})
	if res.ExitCode != 0 {
		t.Fatalf("exit %d; output:\n%s", res.ExitCode, out)
	}
	for _, c := range checks {
		if !strings.Contains(out, "ok: "+c.name+"\n") {
			t.Errorf("%s: failed; output:\n%s", c.name, out)
		}
	}
	for name, content := range files {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil || string(b) != content {
			t.Errorf("source %s: %q, %v; want it untouched (%q)", name, b, err, content)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "config.sh")); err != nil || string(b) != "replaced\n" {
		t.Errorf("clone config.sh: %q, %v; want the job's replacement", b, err)
	}
	if _, err := os.Stat(filepath.Join(src, ".runner")); err == nil {
		t.Error("the job's new file appeared in the source")
	}
}
