package bwrap

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
)

// Defaults for Options.
const (
	DefaultPath    = "/usr/bin/bwrap"
	DefaultUIDBase = 100000
)

// maxID is the largest uid or gid a sandbox may be given (2^32-2; -1 is
// reserved by the kernel).
const maxID = 1<<32 - 2

// Network says how a sandbox reaches the network.
type Network int

const (
	// NetworkNone gives the sandbox its own network namespace holding only
	// a loopback interface that is down: no network at all.
	NetworkNone Network = iota
	// A later mode runs the sandbox inside a network namespace prepared by
	// the agent (veth, nftables policy, DNS allow-list); it will take the
	// namespace's path in Options and replace --unshare-net in the argv
	// builder (sandbox.network).
)

func (n Network) String() string {
	switch n {
	case NetworkNone:
		return "none"
	default:
		return fmt.Sprintf("Network(%d)", int(n))
	}
}

// Options configure an Executor.
type Options struct {
	// Path is the bubblewrap binary. Default DefaultPath.
	Path string
	// WorkRoot holds the per-job workspaces; it is created (mode 0711) if
	// missing. Required, absolute. When the agent runs as root, every
	// parent of WorkRoot must be traversable (o+x) by the sandbox uids:
	// Check reports the first that is not.
	WorkRoot string
	// UIDBase is the first host uid (and gid) of sandboxes when the agent
	// runs as root: a job in slot n runs as UIDBase+n, outside and inside
	// the sandbox. These ids should belong to no host user. Default
	// DefaultUIDBase. Ignored when the agent is not root: sandboxes then
	// run as the agent's own uid and gid.
	UIDBase int
	// KeepWorkspace leaves each job's workspace in place after Run, for
	// debugging. Default false: Run removes it.
	KeepWorkspace bool
	// Network is the sandbox's network. Only NetworkNone exists for now.
	Network Network
	// Logger receives the executor's own diagnostics, never job output.
	// Default: discard.
	Logger *slog.Logger
}

// withDefaults returns opts with every unset field at its default.
func (o Options) withDefaults() Options {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.UIDBase == 0 {
		o.UIDBase = DefaultUIDBase
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// validate checks options that already have their defaults.
func (o Options) validate() error {
	var errs []error
	if !filepath.IsAbs(o.Path) {
		errs = append(errs, fmt.Errorf("path %q: must be absolute", o.Path))
	}
	if o.WorkRoot == "" {
		errs = append(errs, errors.New("work root: required"))
	} else if !filepath.IsAbs(o.WorkRoot) {
		errs = append(errs, fmt.Errorf("work root %q: must be absolute", o.WorkRoot))
	}
	if o.UIDBase < 1 || o.UIDBase > maxID {
		errs = append(errs, fmt.Errorf("uid base %d: must be between 1 and %d", o.UIDBase, maxID))
	}
	if o.Network != NetworkNone {
		errs = append(errs, fmt.Errorf("network %v: only %v is supported", o.Network, NetworkNone))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bwrap options: %w", err)
	}
	return nil
}
