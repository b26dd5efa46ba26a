package api

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Handlers decode, call a service and encode: state changes and their
// audit entries live in the services (internal/audit), so no handler
// opens a transaction or writes the audit log.
func TestHandlersDoNotWriteState(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := regexp.MustCompile(`\.InTx\(|\.Audit\(\)\.Append|audit\.New\(`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if forbidden.MatchString(line) {
				t.Errorf("%s:%d: %s (move it into a service)", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
