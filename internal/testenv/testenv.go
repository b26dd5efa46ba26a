// Package testenv lets tests find the real dependencies they run against
// (PostgreSQL, bubblewrap, Bazel) and decide what to do when one is missing:
// skip on a developer's machine, fail in CI (CI=true), where `make test`
// installs everything and a skip would hide a hole.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// InCI reports whether the tests run in CI.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test, or fails it in CI, because a dependency is absent.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and a test dependency is missing: "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// NeedCommand returns the path of a command, or skips/fails the test.
func NeedCommand(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not found (%s)", name, hint)
	}
	return p
}

// PostgresURL returns the URL of a PostgreSQL server the test may create
// databases on (NIMBUS_TEST_POSTGRES, set by `make test`), or skips/fails.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("NIMBUS_TEST_POSTGRES")
	if u == "" {
		Missing(t, "NIMBUS_TEST_POSTGRES is not set (run `make test`, which starts PostgreSQL)")
	}
	return u
}

// ClickHouseURL returns the URL of a ClickHouse server's HTTP interface
// the test may create databases on (NIMBUS_TEST_CLICKHOUSE, set by `make
// test`), without a trailing slash, or skips/fails.
func ClickHouseURL(t testing.TB) string {
	t.Helper()
	u := strings.TrimRight(os.Getenv("NIMBUS_TEST_CLICKHOUSE"), "/")
	if u == "" {
		Missing(t, "NIMBUS_TEST_CLICKHOUSE is not set (run `make test`, which starts ClickHouse)")
	}
	return u
}

// Buffer is a buffer written and read concurrently: a log or a command's
// output that a test reads while it is written.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
