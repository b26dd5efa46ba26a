package cachebench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMainInProcess runs every row briefly against the in-process server
// over both protocols and checks the table is complete and error-free.
func TestMainInProcess(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--in-process", "--duration=100ms", "--concurrency=4", "--big-size=1048576", "--big-count=2", "--dir=" + t.TempDir()}, &out, &errb, os.Getenv)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	for _, row := range []string{"cas-get-4k", "cas-put-4k", "put-existing-4k", "findmissing-1000", "batch-update-100x4k", "batch-read-100x4k", "get-64m", "put-64m", "bytestream-read-64m"} {
		if !strings.Contains(out.String(), row) {
			t.Errorf("row %s missing from\n%s", row, out.String())
		}
	}
	if strings.Contains(out.String(), "error") {
		t.Errorf("errors in the table:\n%s", out.String())
	}
}

// TestMainOneProtocol measures only the protocol --protocol names.
func TestMainOneProtocol(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--in-process", "--protocol=http", "--rows=put-64m", "--big-size=65536", "--big-count=2", "--dir=" + t.TempDir()}, &out, &errb, os.Getenv)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "target http://") || strings.Contains(out.String(), "grpc://") {
		t.Errorf("want the http target alone, got\n%s", out.String())
	}
	if strings.Count(out.String(), "put-64m") != 1 || strings.Contains(out.String(), "error") {
		t.Errorf("want one error-free put-64m row, got\n%s", out.String())
	}
}

func TestMainFlags(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"--target=ftp://x"}, 2},
		{[]string{"--nosuchflag"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"--protocol=ftp"}, 2},
		{[]string{"--protocol=http", "--target=http://127.0.0.1:1/cache"}, 2},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), tc.args, &out, &errb, os.Getenv); code != tc.code {
			t.Errorf("Main(%v) = %d, want %d\n%s", tc.args, code, tc.code, errb.String())
		}
	}
}

// BenchmarkCacheTable runs the full `nimbus bench cache` table against the
// in-process server (durable writes) and prints it:
//
//	go test -run XXX -bench CacheTable -benchtime 1x ./internal/cache/cachebench/
func BenchmarkCacheTable(b *testing.B) {
	for range b.N {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), []string{"--in-process", "--dir=" + b.TempDir()}, &out, &errb, os.Getenv); code != 0 {
			b.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
		os.Stdout.WriteString(out.String())
	}
}

// TestCompareNimbusUp runs the default mode as a user does: `nimbus up`
// (built from this tree) with a real ci token, beside bazel-remote when
// $NIMBUS_BAZEL_REMOTE names one (else it must say it measures Nimbus
// alone), and the Actions cache rows through the real @actions/cache
// client when it is installed.
func TestCompareNimbusUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts nimbus")
	}
	bin := filepath.Join(t.TempDir(), "nimbus")
	if out, err := exec.Command("go", "build", "-o", bin, "../../../cmd/nimbus").CombinedOutput(); err != nil {
		t.Fatalf("build nimbus: %v\n%s", err, out)
	}
	var out, errb bytes.Buffer
	args := []string{"--nimbus", bin, "--rows", "cas-get-4k,put-existing-4k", "--duration", "200ms", "--concurrency", "4",
		"--actions-size", "1048576", "--actions-client", "../actionscache/testdata/client"}
	code := Main(context.Background(), args, &out, &errb, os.Getenv)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	if n := strings.Count(out.String(), "cas-get-4k"); n != 2 {
		t.Errorf("cas-get-4k rows: %d, want one per protocol:\n%s", n, out.String())
	}
	for _, want := range []string{"server CPU per 4 KiB GET over grpc", "server CPU per 4 KiB GET over http", "resident memory"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("%q missing from\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "error") {
		t.Errorf("errors in the table:\n%s", out.String())
	}
	if os.Getenv("NIMBUS_BAZEL_REMOTE") == "" {
		if _, err := exec.LookPath("bazel-remote"); err != nil && !strings.Contains(errb.String(), "bazel-remote not found") {
			t.Errorf("no word that bazel-remote is absent:\n%s", errb.String())
		}
	} else if !strings.Contains(out.String(), "×") {
		t.Errorf("no ratios with bazel-remote:\n%s", out.String())
	}
	if _, err := os.Stat("../actionscache/testdata/client/node_modules/@actions/cache"); err == nil {
		for _, want := range []string{"actions-restore-1m", "of which download", "of which extract", "of which create", "of which upload"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("no Actions cache row %q:\n%s", want, out.String())
			}
		}
	}
}
