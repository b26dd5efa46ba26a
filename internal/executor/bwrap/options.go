package bwrap

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
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
	o.WorkRoot = filepath.Clean(o.WorkRoot)
	return o, nil
}
