package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/rbs/proxy"
)

const roleEnv = "NIMBUS_RBS_BENCH_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "proxy" {
		os.Exit(proxy.Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestMainPrintsTable runs a tiny benchmark end to end (real Bazel, real
// proxy, in-process agent) and checks the table.
func TestMainPrintsTable(t *testing.T) {
	var missing []string
	for _, tool := range []string{"bazel", "bwrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("missing %v (apt-get install bazel-bootstrap bubblewrap)", missing)
		}
		t.Skipf("missing %v (apt-get install bazel-bootstrap bubblewrap)", missing)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"-files=20", "-runs=1", "-local=false", "-proxy-cmd=/usr/bin/env " + roleEnv + "=proxy " + exe}, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("Main returned %d", code)
	}
	for _, row := range []string{"warm no-op build", "one-file-changed rebuild", "cold start", "sync, one file changed, inotify"} {
		if !strings.Contains(stdout.String(), row) {
			t.Errorf("table lacks %q", row)
		}
	}
}

func TestMainRejectsBadFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"-nope"}, &stdout, &stderr); code != 2 {
		t.Errorf("Main with a bad flag returned %d, want 2", code)
	}
}
