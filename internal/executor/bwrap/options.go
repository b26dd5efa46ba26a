package bwrap

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
)

// Defaults of Options.
const (
	DefaultBwrapPath = "/usr/bin/bwrap"
	DefaultUIDBase   = 100000
)

// maxUID keeps UIDBase+slot clear of (uid_t)-1 and of the 32-bit overflow ids.
const maxUID = 1<<31 - 1

// DefaultEtc lists the entries of the host's /etc a sandbox sees by default
// (read-only, those that exist). /etc/passwd and /etc/group are not among
// them: the sandbox gets its own, naming its uid.
var DefaultEtc = []string{
	"hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf",
	"protocols", "services", "ld.so.cache", "localtime", "os-release",
	"ssl", "ca-certificates", "alternatives",
}

// Options configure an Executor. The zero value of a field means its
// default.
type Options struct {
	// BwrapPath is the bubblewrap binary. Default DefaultBwrapPath.
	BwrapPath string
	// WorkRoot is the host directory holding the per-job workspaces
	// (required, absolute). It is created with mode 0711 if missing. It and
	// all its parents must be traversable (o+x) by the sandbox uids, or
	// bubblewrap cannot bind the workspace.
	WorkRoot string
	// UIDBase: when the agent runs as root, the job in slot n runs as host
	// uid and gid UIDBase+n (inside as well). When the agent is not root,
	// jobs run as the agent's own uid and UIDBase is unused. Pick a range
	// that no host user, and no subordinate-id range of /etc/subuid, uses.
	// Default DefaultUIDBase.
	UIDBase int
	// Etc lists the names under the host's /etc to bind read-only into the
	// sandbox when they exist (files or directories). Default DefaultEtc.
	Etc []string
	// KeepWorkspace leaves each workspace on disk after Run, for debugging.
	KeepWorkspace bool
	// Logger receives the executor's own diagnostics (never job output).
	// Default: discard.
	Logger *slog.Logger

	// WarmDocker keeps, for each of the slots 0 … WarmDocker-1, a sandbox
	// with its Docker daemon started, waiting for a job that asks for one
	// (Spec.Docker) and has WarmLimits, no binds and a network built once
	// it runs (Spec.BuildNetwork). As root only.
	WarmDocker int
	WarmLimits executor.Limits
	// WarmNetFiles are the paths under /etc of every file a job's network
	// may give it (executor.Network.Files; netpolicy.FilePaths): a warm
	// sandbox binds each, filled with the host's own file or empty, and
	// writes its network's once built. Default /etc/resolv.conf and
	// /etc/hosts.
	WarmNetFiles []string
	// WarmBinds are bind targets a warm sandbox keeps an empty directory
	// at (e.g. /runner): a job's read-write binds to these are mounted
	// there when it takes the sandbox (the mount propagates into it).
	WarmBinds []string
	// Init is the nimbus binary a warm sandbox waits for its job's command
	// in (`nimbus container-init`), bound read-only. Default: the running
	// executable.
	Init string
	// Metrics count the warm pool's hits, misses and refills (nil: not
	// exported).
	Metrics *warmpool.Metrics
}

// withDefaults returns o with defaults filled in, or an error naming the
// first invalid field.
func (o Options) withDefaults() (Options, error) {
	if o.BwrapPath == "" {
		o.BwrapPath = DefaultBwrapPath
	}
	if o.UIDBase == 0 {
		o.UIDBase = DefaultUIDBase
	}
	if o.Etc == nil {
		o.Etc = DefaultEtc
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	switch {
	case !filepath.IsAbs(o.BwrapPath):
		return o, fmt.Errorf("bwrap options: BwrapPath %q is not an absolute path", o.BwrapPath)
	case o.WorkRoot == "":
		return o, fmt.Errorf("bwrap options: WorkRoot is required")
	case !filepath.IsAbs(o.WorkRoot):
		return o, fmt.Errorf("bwrap options: WorkRoot %q is not an absolute path", o.WorkRoot)
	case o.UIDBase < 1 || o.UIDBase > maxUID:
		return o, fmt.Errorf("bwrap options: UIDBase %d is out of range 1..%d", o.UIDBase, maxUID)
	}
	for _, name := range o.Etc {
		if name == "" || filepath.IsAbs(name) || filepath.Clean(name) != name ||
			name == "." || strings.HasPrefix(name, "../") || name == ".." ||
			name == "passwd" || name == "group" {
			return o, fmt.Errorf("bwrap options: Etc entry %q must be a clean relative name under /etc other than passwd and group", name)
		}
	}
	if o.WarmDocker < 0 {
		return o, fmt.Errorf("bwrap options: WarmDocker %d is negative", o.WarmDocker)
	}
	if o.WarmDocker > 0 {
		if err := o.WarmLimits.Validate(); err != nil {
			return o, fmt.Errorf("bwrap options: WarmLimits: %w", err)
		}
		if o.Init == "" {
			exe, err := os.Executable()
			if err != nil {
				return o, fmt.Errorf("bwrap options: Init: %w", err)
			}
			o.Init = exe
		}
		if !filepath.IsAbs(o.Init) {
			return o, fmt.Errorf("bwrap options: Init %q is not an absolute path", o.Init)
		}
		if o.WarmNetFiles == nil {
			o.WarmNetFiles = []string{"/etc/resolv.conf", "/etc/hosts"}
		}
		names := map[string]bool{}
		for _, p := range o.WarmNetFiles {
			if !strings.HasPrefix(p, "/etc/") || filepath.Clean(p) != p || names[filepath.Base(p)] {
				return o, fmt.Errorf("bwrap options: WarmNetFiles: %q is not a clean path under /etc with a name of its own", p)
			}
			names[filepath.Base(p)] = true
		}
		for _, p := range o.WarmBinds {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || p == ctlTarget || p == initTarget {
				return o, fmt.Errorf("bwrap options: WarmBinds: %q is not a clean absolute path of its own", p)
			}
		}
	}
	o.WorkRoot = filepath.Clean(o.WorkRoot)
	return o, nil
}
