package sqlstore

import (
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Migrations are numbered 1, 2, 3… with no number twice: two branches
// that each add "the next" migration must not both land as the same one.
func TestMigrationNumbers(t *testing.T) {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for i, f := range files {
		name := path.Base(f)
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil || v != i+1 {
			t.Errorf("migration %s: want number %03d (numbers are unique and consecutive)", name, i+1)
		}
	}
}
