package bwrap

import (
	"maps"
	"slices"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// What a job sees inside every sandbox.
const (
	// WorkspaceDir is where the job's fresh workspace is mounted; it is the
	// working directory and the default HOME.
	WorkspaceDir = "/workspace"
	// Hostname is the sandbox's host name.
	Hostname = "nimbus"
	// DefaultEnvPath is PATH when Spec.Env sets none.
	DefaultEnvPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// launcher starts Argv inside the sandbox: it searches PATH and exits
	// 127 when the command is not found (126 when it cannot be run), where
	// bwrap's own exec would fail the whole sandbox with status 1.
	launcher = "/usr/bin/env"
)

// etcEntries are the only parts of the host's /etc a job sees, each bound
// read-only when it exists.
var etcEntries = []string{
	"/etc/passwd",
	"/etc/group",
	"/etc/hosts",
	"/etc/resolv.conf",
	"/etc/nsswitch.conf",
	"/etc/ld.so.cache",
	"/etc/localtime",
	"/etc/ssl",
	"/etc/ca-certificates",
	"/etc/alternatives",
}

// sandbox is everything that shapes one bwrap invocation.
type sandbox struct {
	uid, gid  int
	workspace string      // host directory mounted at WorkspaceDir
	root      []rootEntry // the host's top-level directories and symlinks next to /usr
	network   Network
	binds     []executor.Bind
	env       map[string]string
	argv      []string
	// statusFD is the bwrap file descriptor that receives the JSON
	// status: the sandbox init's pid, then the command's exit code.
	statusFD int
}

// args returns bwrap's options and the command for s, which goes after
// them and "--". It is a pure function of s; s must have been validated.
func (s sandbox) args() (options, command []string) {
	a := []string{
		"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
		// No nested user namespaces: nothing inside gets capabilities again.
		"--disable-userns",
		"--uid", strconv.Itoa(s.uid), "--gid", strconv.Itoa(s.gid),
		"--hostname", Hostname,
		"--die-with-parent", "--new-session",
		"--cap-drop", "ALL",
		"--clearenv",
		"--json-status-fd", strconv.Itoa(s.statusFD),
	}
	a = append(a, s.networkArgs()...)
	a = append(a, "--ro-bind", "/usr", "/usr")
	for _, e := range s.root {
		if e.link != "" {
			a = append(a, "--symlink", e.link, e.path)
		} else {
			a = append(a, "--ro-bind", e.path, e.path)
		}
	}
	for _, p := range etcEntries {
		a = append(a, "--ro-bind-try", p, p)
	}
	a = append(a,
		"--proc", "/proc",
		"--dev", "/dev",
		"--tmpfs", "/tmp",
		"--bind", s.workspace, WorkspaceDir,
	)
	for _, b := range s.binds {
		flag := "--bind"
		if b.ReadOnly {
			flag = "--ro-bind"
		}
		a = append(a, flag, b.Source, b.Target)
	}
	// Last, once every mount point exists: the sandbox's root (a tmpfs
	// bwrap made) becomes read-only; the mounts on it keep their modes.
	a = append(a, "--remount-ro", "/", "--chdir", WorkspaceDir)
	env := jobEnv(s.env)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		a = append(a, "--setenv", k, env[k])
	}
	return a, append([]string{launcher, "--"}, s.argv...)
}

// networkArgs is the seam for network modes.
func (s sandbox) networkArgs() []string {
	switch s.network {
	default: // NetworkNone; Options.validate refuses the others.
		return []string{"--unshare-net"}
	}
}

// jobEnv is the job's complete environment: env plus PATH and HOME when it
// does not set them.
func jobEnv(env map[string]string) map[string]string {
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	if _, ok := out["PATH"]; !ok {
		out["PATH"] = DefaultEnvPath
	}
	if _, ok := out["HOME"]; !ok {
		out["HOME"] = WorkspaceDir
	}
	return out
}
