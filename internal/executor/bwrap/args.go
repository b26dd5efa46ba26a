package bwrap

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/jobdocker"
)

// File descriptors bwrap inherits (exec.Cmd.ExtraFiles, from 3 on).
const (
	fdArgs    = 3 // NUL-separated options, read by --args
	fdInfo    = 4 // bwrap writes the sandbox init's host pid here (--info-fd)
	fdStarted = 5 // the wrapper writes one byte here just before it execs the job
	fdPasswd  = 6 // contents of the sandbox's /etc/passwd (--ro-bind-data)
	fdGroup   = 7 // contents of the sandbox's /etc/group
	fdSeccomp = 8 // the syscall filter, read by --seccomp
	// fdNetFiles and on: with a network, its files (/etc/resolv.conf,
	// /etc/hosts, …), one descriptor each, in the order of
	// invocation.NetFiles.
	fdNetFiles = 9
)

// Fixed places and names inside the sandbox.
const (
	sandboxWorkspace = "/workspace"
	sandboxHostname  = "nimbus"
	defaultPath      = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	shellPath        = "/bin/sh"
	wrapperName      = "nimbus-job" // $0 of the wrapper, shown in its error messages
)

// wrapperScript runs first in the sandbox, as the job's process. It sends
// its stderr (bwrap's, kept apart so that setup errors can be told from job
// output) to stdout, closes the descriptors meant for bwrap, tells the
// executor the sandbox is set up, and execs the job. The shell makes a
// missing command exit 127 and a non-executable one 126, as users expect;
// bwrap alone would exit 1 for both.
//
// The network's files need no closing here: bwrap closes the descriptors
// of --ro-bind-data once read (and dash takes only single-digit ones).
var wrapperScript = fmt.Sprintf(`exec 2>&1 %d<&- %d>&- %d<&- %d<&- %d<&-; printf . >&%d || exit 125; exec %d>&-; exec "$@"`,
	fdArgs, fdInfo, fdPasswd, fdGroup, fdSeccomp, fdStarted, fdStarted)

// network says how a sandbox reaches the network.
type network int

const (
	// networkNone gives the sandbox its own empty network namespace: only a
	// loopback interface, nothing beyond it.
	networkNone network = iota
	// networkJoined: bwrap starts inside a prepared namespace
	// (executor.Spec.Network, entered by the forking thread) and keeps it;
	// /etc/resolv.conf and /etc/hosts are the network's own.
	networkJoined
	// networkHost: the sandbox shares the agent's network
	// (executor.HostNetwork).
	networkHost
	// networkLater: an empty namespace of the sandbox's own, as
	// networkNone, where the job's network is built once the sandbox
	// runs (a warm sandbox); its files are bound from the Docker layout's
	// NetFiles and written then.
	networkLater
)

// invocation is everything that decides a sandbox's bwrap command line.
type invocation struct {
	Argv      []string
	Env       map[string]string // the Spec's; buildArgs adds the defaults
	Binds     []executor.Bind
	Workspace string // host directory bound read-write at /workspace
	Host      hostLayout
	Etc       []string // names under /etc to bind read-only if they exist
	Network   network
	Dir       string // working directory inside; empty: the workspace
	// NetFiles are the paths of the joined network's files, bound from
	// descriptors fdNetFiles, fdNetFiles+1, …
	NetFiles []string
	// Tmp is a host directory bound read-write at /tmp; empty: a tmpfs.
	Tmp string
	// Seccomp installs the syscall filter read from fdSeccomp.
	Seccomp bool
	// Docker, when set, gives the sandbox a Docker daemon of its own (see
	// internal/executor/jobdocker): nested namespaces allowed, the daemon's directories
	// bound, its variables set, and the daemon started before Argv.
	Docker *jobdocker.Layout
}

// bwrapArgs is a bwrap command line in two parts.
type bwrapArgs struct {
	// Options go through --args (a file descriptor), so the job's
	// environment never shows in the host's process list.
	Options []string
	// Command follows "--" on bwrap's own command line.
	Command []string
}

// Argv is bwrap's own argument vector, without the program name.
func (a bwrapArgs) Argv() []string {
	return append([]string{"--args", strconv.Itoa(fdArgs), "--"}, a.Command...)
}

// OptionsData is the content of the --args file: NUL-terminated options.
func (a bwrapArgs) OptionsData() []byte {
	var b strings.Builder
	for _, o := range a.Options {
		b.WriteString(o)
		b.WriteByte(0)
	}
	return []byte(b.String())
}

// buildArgs builds the bwrap command line of inv. It is pure: what exists on
// the host was probed before (Host), or is left to bwrap (--ro-bind-try).
func buildArgs(inv invocation) (bwrapArgs, error) {
	if err := validate(inv); err != nil {
		return bwrapArgs{}, err
	}
	o := []string{
		"--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
	}
	switch inv.Network {
	case networkNone:
		o = append(o, "--unshare-net")
	case networkLater:
		if inv.Docker == nil || inv.Docker.NetFiles == "" {
			return bwrapArgs{}, errors.New("a network built later needs its files' directory")
		}
		o = append(o, "--unshare-net")
	case networkJoined, networkHost:
	default:
		return bwrapArgs{}, fmt.Errorf("network mode %d is not supported", inv.Network)
	}
	if inv.Docker == nil {
		o = append(o, "--disable-userns") // no nested user namespace, hence no capabilities at all
	}
	o = append(o,
		"--hostname", sandboxHostname,
		"--die-with-parent",
		"--new-session",
		"--cap-drop", "ALL",
		"--clearenv",
	)
	env := inv.Env
	if inv.Docker != nil {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		for k, v := range jobdocker.Env {
			if _, ok := env[k]; !ok {
				env[k] = v
			}
		}
	}
	for _, kv := range jobEnv(env) {
		o = append(o, "--setenv", kv[0], kv[1])
	}
	o = append(o, "--ro-bind", "/usr", "/usr")
	for _, l := range inv.Host.Symlinks {
		o = append(o, "--symlink", l.Target, l.Path)
	}
	for _, d := range inv.Host.Dirs {
		o = append(o, "--ro-bind", d, d)
	}
	for _, name := range inv.Etc {
		if (inv.Network == networkJoined || inv.Network == networkLater) && slices.Contains(inv.NetFiles, path.Join("/etc", name)) {
			continue
		}
		p := path.Join("/etc", name)
		o = append(o, "--ro-bind-try", p, p)
	}
	if inv.Network == networkJoined || inv.Network == networkLater {
		for i, p := range inv.NetFiles {
			if inv.Docker != nil && inv.Docker.NetFiles != "" {
				o = append(o, "--ro-bind", path.Join(inv.Docker.NetFiles, path.Base(p)), p)
				continue
			}
			o = append(o, "--perms", "0644", "--ro-bind-data", strconv.Itoa(fdNetFiles+i), p)
		}
	}
	o = append(o,
		"--perms", "0644", "--ro-bind-data", strconv.Itoa(fdPasswd), "/etc/passwd",
		"--perms", "0644", "--ro-bind-data", strconv.Itoa(fdGroup), "/etc/group",
		"--proc", "/proc",
		"--dev", "/dev",
	)
	if inv.Tmp != "" {
		o = append(o, "--bind", inv.Tmp, "/tmp")
	} else {
		o = append(o, "--tmpfs", "/tmp")
	}
	o = append(o, "--bind", inv.Workspace, sandboxWorkspace)
	if inv.Docker != nil {
		o = append(o, inv.Docker.BwrapArgs()...)
	}
	for _, b := range inv.Binds {
		kind := "--bind"
		if b.ReadOnly {
			kind = "--ro-bind"
		}
		o = append(o, kind, b.Source, b.Target)
	}
	o = append(o,
		"--remount-ro", "/", // the root tmpfs: nothing new at the top level
		"--chdir", cmp.Or(inv.Dir, sandboxWorkspace),
		"--info-fd", strconv.Itoa(fdInfo),
	)
	if inv.Seccomp {
		o = append(o, "--seccomp", strconv.Itoa(fdSeccomp))
	}
	cmd := []string{shellPath, "-c", wrapperScript, wrapperName}
	switch {
	case inv.Docker != nil && inv.Docker.Warm:
		cmd = append(cmd, shellPath, "-c", jobdocker.WarmPrelude, "nimbus-docker")
	case inv.Docker != nil:
		cmd = append(cmd, shellPath, "-c", jobdocker.Prelude, "nimbus-docker")
	}
	cmd = append(cmd, inv.Argv...)
	return bwrapArgs{Options: o, Command: cmd}, nil
}

// jobEnv is the job's complete environment, sorted by name: env, plus PATH
// and HOME when env lacks them.
func jobEnv(env map[string]string) [][2]string {
	out := make([][2]string, 0, len(env)+2)
	for k, v := range env {
		out = append(out, [2]string{k, v})
	}
	if _, ok := env["PATH"]; !ok {
		out = append(out, [2]string{"PATH", defaultPath})
	}
	if _, ok := env["HOME"]; !ok {
		out = append(out, [2]string{"HOME", sandboxWorkspace})
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// reservedTargets may not be bind targets: the sandbox's own /proc and
// /dev, its workspace, and the root.
var reservedTargets = []string{"/", "/proc", "/dev", sandboxWorkspace}

func validate(inv invocation) error {
	if len(inv.Argv) == 0 || inv.Argv[0] == "" {
		return errors.New("empty command")
	}
	for i, a := range inv.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argument %d contains a NUL byte", i)
		}
	}
	for k, v := range inv.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("invalid environment variable name %q", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("environment variable %s contains a NUL byte", k)
		}
	}
	if !path.IsAbs(inv.Workspace) || strings.IndexByte(inv.Workspace, 0) >= 0 {
		return fmt.Errorf("workspace %q is not an absolute path", inv.Workspace)
	}
	for _, p := range inv.NetFiles {
		if !strings.HasPrefix(p, "/etc/") || path.Clean(p) != p || strings.IndexByte(p, 0) >= 0 {
			return fmt.Errorf("network file %q is not a clean path under /etc", p)
		}
	}
	if inv.Dir != "" && (!path.IsAbs(inv.Dir) || path.Clean(inv.Dir) != inv.Dir || strings.IndexByte(inv.Dir, 0) >= 0) {
		return fmt.Errorf("working directory %q is not a clean absolute path", inv.Dir)
	}
	if inv.Tmp != "" && (!path.IsAbs(inv.Tmp) || strings.IndexByte(inv.Tmp, 0) >= 0) {
		return fmt.Errorf("tmp %q is not an absolute path", inv.Tmp)
	}
	for _, b := range inv.Binds {
		if !path.IsAbs(b.Source) || strings.IndexByte(b.Source, 0) >= 0 {
			return fmt.Errorf("bind source %q is not an absolute path", b.Source)
		}
		if !path.IsAbs(b.Target) || path.Clean(b.Target) != b.Target || strings.IndexByte(b.Target, 0) >= 0 {
			return fmt.Errorf("bind target %q is not a clean absolute path", b.Target)
		}
		for _, r := range reservedTargets {
			if b.Target == r || (r != "/" && r != sandboxWorkspace && strings.HasPrefix(b.Target, r+"/")) {
				return fmt.Errorf("bind target %q is reserved", b.Target)
			}
		}
	}
	return nil
}
