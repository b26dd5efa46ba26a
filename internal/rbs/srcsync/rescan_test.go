package srcsync

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// TestRescanMatchesScan: after any sequence of changes, rescanning only
// the directories where something changed gives what a full scan gives.
func TestRescanMatchesScan(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		root, err := os.MkdirTemp("", "rescan")
		if err != nil {
			rt.Fatal(err)
		}
		defer os.RemoveAll(root)
		s := NewScanner(root)
		prev, _, err := s.Scan(context.Background())
		if err != nil {
			rt.Fatal(err)
		}
		names := []string{"a", "b", "c"}
		genPath := rapid.Custom(func(t *rapid.T) string {
			depth := rapid.IntRange(1, 3).Draw(t, "depth")
			p := ""
			for i := 0; i < depth; i++ {
				p = path.Join(p, rapid.SampledFrom(names).Draw(t, "name"))
			}
			return p
		})
		for step := 0; step < 12; step++ {
			p := genPath.Draw(rt, "path")
			abs := filepath.Join(root, filepath.FromSlash(p))
			before := listings(root)
			switch rapid.IntRange(0, 5).Draw(rt, "op") {
			case 0: // write a file (creating parents)
				os.MkdirAll(filepath.Dir(abs), 0o755)
				os.WriteFile(abs, []byte(rapid.String().Draw(rt, "content")), 0o644)
			case 1: // make a directory
				os.MkdirAll(abs, 0o755)
			case 2: // remove anything
				os.RemoveAll(abs)
			case 3: // symlink
				os.RemoveAll(abs)
				os.Symlink(rapid.SampledFrom(names).Draw(rt, "target"), abs)
			case 4: // chmod
				os.Chmod(abs, 0o755)
			case 5: // replace a directory by a file
				os.RemoveAll(abs)
				os.WriteFile(abs, []byte("x"), 0o644)
			}
			// What inotify would report: the directories whose entries changed.
			after := listings(root)
			var dirty []string
			for d, l := range after {
				if before[d] != l {
					dirty = append(dirty, d)
				}
			}
			got, _, err := s.Rescan(context.Background(), prev, dirty)
			if err != nil {
				rt.Fatal(err)
			}
			want, _, err := NewScanner(root).Scan(context.Background())
			if err != nil {
				rt.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				rt.Fatalf("after a change of %s (dirty %q): rescan differs from a scan (-want +got):\n%s", p, dirty, diff)
			}
			prev = got
		}
	})
}

// listings describes every directory under root (not following links) by
// its entries' names, types, modes and contents.
func listings(root string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		ents, _ := os.ReadDir(p)
		l := ""
		for _, e := range ents {
			info, _ := e.Info()
			l += e.Name() + ":" + info.Mode().String()
			if info.Mode().IsRegular() {
				b, _ := os.ReadFile(filepath.Join(p, e.Name()))
				l += ":" + string(b)
			}
			if info.Mode()&os.ModeSymlink != 0 {
				t, _ := os.Readlink(filepath.Join(p, e.Name()))
				l += ">" + t
			}
			l += "\n"
		}
		out[filepath.ToSlash(rel)] = l
		return nil
	})
	return out
}
