package server

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// systemDirs are bound read-only from the agent into every sandbox, so a
// developer path may not be one of them or below one.
var systemDirs = []string{"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/dev", "/sys", "/run", "/tmp"}

// Mirror is the developer's paths that a session reproduces on the agent.
type Mirror struct {
	Workspace      string
	OutputBase     string
	OutputUserRoot string
}

// Validate checks that the paths are absolute and clean, outside the
// sandbox's system directories (and reserved), and not nested in one
// another except for the output base under the output user root.
func (m Mirror) Validate(reserved ...string) error {
	for _, f := range []struct{ name, p string }{
		{"workspace", m.Workspace}, {"output_base", m.OutputBase}, {"output_user_root", m.OutputUserRoot},
	} {
		if err := validateMirrorPath(f.p, reserved); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if _, ok := within(m.Workspace, m.OutputBase); ok {
		return errors.New("the output base is inside the workspace")
	}
	if _, ok := within(m.OutputBase, m.Workspace); ok {
		return errors.New("the workspace is inside the output base")
	}
	if _, ok := within(m.Workspace, m.OutputUserRoot); ok {
		return errors.New("the output user root is inside the workspace")
	}
	if _, ok := within(m.OutputUserRoot, m.Workspace); ok {
		return errors.New("the workspace is inside the output user root")
	}
	if _, ok := within(m.OutputBase, m.OutputUserRoot); ok && m.OutputBase != m.OutputUserRoot {
		return errors.New("the output user root is inside the output base")
	}
	if m.OutputBase == m.OutputUserRoot {
		return errors.New("the output base is the output user root")
	}
	return nil
}

func validateMirrorPath(p string, reserved []string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	if strings.ContainsAny(p, "\x00\n") || len(p) > 1024 {
		return fmt.Errorf("%q: bad characters or too long", p)
	}
	for _, sys := range slices.Concat(systemDirs, reserved) {
		if p == sys || strings.HasPrefix(p, sys+"/") && sys != "/tmp" {
			return fmt.Errorf("%q is a system directory of the sandbox", p)
		}
	}
	return nil
}

// ToStorage maps an absolute developer path under the workspace or output
// base to the matching path relative to the session's base directory.
func (m Mirror) ToStorage(d SessionDirs, p string) (string, bool) {
	p = filepath.Clean(p)
	if !filepath.IsAbs(p) {
		return "", false
	}
	for _, pair := range [][2]string{{m.OutputBase, d.OutputBase}, {m.Workspace, d.Workspace}} {
		if rel, ok := within(pair[0], p); ok {
			baseRel, _ := within(d.Base, pair[1])
			return filepath.Join(baseRel, rel), true
		}
	}
	return "", false
}
