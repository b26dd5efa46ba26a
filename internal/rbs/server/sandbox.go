package server

import (
	"os"
	"path/filepath"
	"strings"
)

// Sandbox describes the bubblewrap sandbox of one Bazel server: a fresh
// root with the agent's system directories read-only, the session's
// storage bound read-write at the developer's paths, new user, pid, ipc
// and uts namespaces, and nothing else of the host's filesystem.
type Sandbox struct {
	Bwrap string // path of bwrap
	// ReadOnly paths are bound read-only at the same place (system
	// directories, the Bazel install base, the JDK). A path that is a
	// symlink on the agent (/bin -> usr/bin) is reproduced as a symlink.
	ReadOnly []string
	// Binds are bound read-write, in order (parents before children).
	Binds []Bind
	// Tmp is bound at /tmp.
	Tmp   string
	Chdir string
}

// Bind is one read-write bind mount.
type Bind struct{ Source, Target string }

// defaultReadOnly are the agent directories every sandbox gets.
var defaultReadOnly = []string{"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// Args returns the bwrap command line running command.
func (s Sandbox) Args(command []string) []string {
	args := []string{s.Bwrap,
		"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--die-with-parent", "--new-session", "--hostname", "nimbus-rbs",
		"--proc", "/proc", "--dev", "/dev",
	}
	for _, p := range s.ReadOnly {
		st, err := os.Lstat(p)
		switch {
		case err != nil:
			continue
		case st.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(p); err == nil {
				args = append(args, "--symlink", target, p)
			}
		default:
			args = append(args, "--ro-bind", p, p)
		}
	}
	if s.Tmp != "" {
		args = append(args, "--bind", s.Tmp, "/tmp")
	}
	for _, b := range s.Binds {
		args = append(args, "--bind", b.Source, b.Target)
	}
	if s.Chdir != "" {
		args = append(args, "--chdir", s.Chdir)
	}
	args = append(args, "--")
	return append(args, command...)
}

// readOnlyFor returns the default read-only set plus extra paths that are
// not already below one of them.
func readOnlyFor(extra ...string) []string {
	out := append([]string(nil), defaultReadOnly...)
	for _, e := range extra {
		e = filepath.Clean(e)
		covered := false
		for _, d := range out {
			if e == d || strings.HasPrefix(e, d+"/") {
				covered = true
			}
		}
		if !covered {
			out = append(out, e)
		}
	}
	return out
}
