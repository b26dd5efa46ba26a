package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeWorkspace creates a workspace of about files source files in
// packages of 100, each package concatenating its files with a genrule.
func writeWorkspace(dir string, files int) error {
	pkgs := max((files+99)/100, 1)
	per := max(files/pkgs, 1)
	write := func(rel, content string, mode os.FileMode) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, []byte(content), mode)
	}
	if err := write("WORKSPACE", "", 0o644); err != nil {
		return err
	}
	for p := 0; p < pkgs; p++ {
		var srcs []string
		for f := 0; f < per; f++ {
			name := fmt.Sprintf("f%03d.txt", f)
			srcs = append(srcs, `"`+name+`"`)
			if err := write(fmt.Sprintf("pkg%03d/%s", p, name), fmt.Sprintf("package %d file %d\n", p, f), 0o644); err != nil {
				return err
			}
		}
		build := fmt.Sprintf("genrule(name = \"cat\", srcs = [%s], outs = [\"all.txt\"], cmd = \"cat $(SRCS) > $@\")\n", strings.Join(srcs, ", "))
		if err := write(fmt.Sprintf("pkg%03d/BUILD", p), build, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// editFile changes one source file (a different content each time).
func editFile(dir string, n int) error {
	return os.WriteFile(filepath.Join(dir, "pkg000", "f000.txt"), []byte(fmt.Sprintf("edit %d\n", n)), 0o644)
}
