package cachebench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestMainInProcess runs every row briefly against the in-process server
// over both protocols and checks the table is complete and error-free.
func TestMainInProcess(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"--duration=100ms", "--concurrency=4", "--big-size=1048576", "--big-count=2", "--dir=" + t.TempDir()}, &out, &errb)
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
	code := Main(context.Background(), []string{"--protocol=http", "--rows=put-64m", "--big-size=65536", "--big-count=2", "--dir=" + t.TempDir()}, &out, &errb)
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
		if code := Main(context.Background(), tc.args, &out, &errb); code != tc.code {
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
		if code := Main(context.Background(), []string{"--dir=" + b.TempDir()}, &out, &errb); code != 0 {
			b.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
		}
		os.Stdout.WriteString(out.String())
	}
}
