package bwrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	workRoot := filepath.Join(traversableDir(t), "work")
	if err := Check(t.Context(), Options{WorkRoot: workRoot}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if entries, err := os.ReadDir(workRoot); err != nil || len(entries) != 0 {
		t.Errorf("work root after Check: %v, %v; want it empty", entries, err)
	}
}

func TestCheckMissingBubblewrap(t *testing.T) {
	t.Parallel()
	err := Check(t.Context(), Options{Path: "/nonexistent/bwrap", WorkRoot: t.TempDir()})
	want := "bubblewrap not found at /nonexistent/bwrap: install it with `apt-get install bubblewrap`"
	if err == nil || err.Error() != want {
		t.Errorf("Check: %v, want %q", err, want)
	}
}

func TestCheckUnreachableWorkRoot(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	closed := traversableDir(t)
	if err := os.Chmod(closed, 0o700); err != nil { // root's own, closed to others
		t.Fatal(err)
	}
	err := Check(t.Context(), Options{WorkRoot: filepath.Join(closed, "work")})
	if err == nil || !strings.Contains(err.Error(), "chmod o+x "+closed) {
		t.Errorf("Check: %v, want an error naming %s and the fix", err, closed)
	}
}

func TestCheckReportsBwrapFailure(t *testing.T) {
	requireSandbox(t)
	t.Parallel()
	// A binary that exits 1 without a word, as bwrap does when it cannot
	// create a sandbox and says why on stderr.
	err := Check(t.Context(), Options{Path: "/usr/bin/false", WorkRoot: filepath.Join(traversableDir(t), "work")})
	if err == nil || !strings.Contains(err.Error(), "bubblewrap cannot create a sandbox here") || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("Check: %v, want the failure and its exit status", err)
	}
}
