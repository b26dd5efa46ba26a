package audit_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Only this package writes the audit log (the store implements it): every
// other package goes through Log.Do or Log.Record, so a change and its
// entry cannot drift apart at a new call site.
func TestOnlyAuditWritesTheLog(t *testing.T) {
	root := filepath.Join("..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "audit" || rel == "store" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, ".Audit().Append(") {
				t.Errorf("internal/%s:%d appends to the audit log itself: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
