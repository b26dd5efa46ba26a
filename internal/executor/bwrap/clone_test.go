package bwrap

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// TestCloneTreeInSandbox gives a job a clone of a runner directory: it can
// create, replace and delete files in it, but not change a shared original
// in place.
func TestCloneTreeInSandbox(t *testing.T) {
	e := newExecutor(t)
	slot := newSlot(t)
	uid, gid, err := e.Identity(slot)
	if err != nil {
		t.Fatal(err)
	}
	dir := traversableDir(t)
	src := filepath.Join(dir, "runner")
	files := map[string]string{
		"run.sh":              "#!/bin/sh\necho runner\n",
		"config.sh":           "config\n",
		"bin/Runner.Listener": "listener\n",
	}
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, "clone")
	if err := workspace.CloneTree(src, dst, uid, gid); err != nil {
		t.Fatal(err)
	}

	res, out := runScript(t, e, slot, `
		set -e
		cd /runner
		./run.sh
		mkdir _diag _work && echo log > _diag/Runner.log
		echo '{"agentId": 1}' > .runner.tmp && mv .runner.tmp .runner
		echo new > config.sh.tmp && mv config.sh.tmp config.sh
		rm bin/Runner.Listener
		if echo tamper 2>/dev/null >> run.sh; then echo "wrote to a shared file"; fi
		if chmod 0777 run.sh 2>/dev/null; then echo "changed a shared file's mode"; fi
		echo done
	`, func(s *executor.Spec) {
		s.Binds = []executor.Bind{{Source: dst, Target: "/runner"}}
	})
	want := "runner\ndone\n"
	if !e.asRoot {
		// Not root: the job runs as the files' owner, so CloneTree copied
		// them; in-place writes reach only the copies.
		want = "runner\nwrote to a shared file\nchanged a shared file's mode\ndone\n"
	}
	if res.ExitCode != 0 || out != want {
		t.Errorf("job in the clone: exit %d, output %q, want 0, %q", res.ExitCode, out, want)
	}
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(src, name))
		if err != nil || string(got) != data {
			t.Errorf("source %s = %q, %v after the job; want %q", name, got, err, data)
		}
	}
	if info, err := os.Stat(filepath.Join(src, "run.sh")); err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("source run.sh mode after the job: %v, %v", info.Mode(), err)
	}
	for name, want := range map[string]string{".runner": "{\"agentId\": 1}\n", "config.sh": "new\n", "_diag/Runner.log": "log\n"} {
		if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(got) != want {
			t.Errorf("clone %s = %q, %v; want %q", name, got, err, want)
		}
	}
}
