package cache_test

import (
	"bytes"
	"io"
	"os"
	"testing"
)

func bytesReader(b []byte) io.Reader      { return bytes.NewReader(b) }
func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

// needTool skips a test when a tool it needs is missing, except under
// CI=true where every tool must be installed and the test fails instead.
func needTool(t *testing.T, path, install string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (install: %s)", path, install)
	}
	t.Skipf("%s is missing (install: %s)", path, install)
}
