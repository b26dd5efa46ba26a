package rbs

import (
	"fmt"
	"strings"
)

// overriddenStartupFlags are the server flags the agent sets itself (paths
// of its own install and the mirrored ones, lifetime); the client's values
// are dropped.
var overriddenStartupFlags = map[string]bool{
	"output_base": true, "output_user_root": true, "install_base": true, "install_md5": true,
	"workspace_directory": true, "default_system_javabase": true, "failure_detail_out": true,
	"max_idle_secs": true, "connect_timeout_secs": true, "batch": true, "server_jvm_out": true,
	"server_javabase": true, "host_jvm_args": true, "host_jvm_profile": true, "host_jvm_debug": true,
}

// StartupFlagName returns the name of a --flag, --flag=value or --noflag
// argument, without dashes or the "no" prefix of a boolean.
func StartupFlagName(arg string) (string, bool) {
	if !strings.HasPrefix(arg, "--") || len(arg) < 3 {
		return "", false
	}
	name, _, _ := strings.Cut(arg[2:], "=")
	return name, true
}

// PassThroughStartupOptions returns the server startup flags that a remote
// server should get: every --flag except those the agent sets itself. It
// refuses anything that is not a --flag (JVM flags never cross).
func PassThroughStartupOptions(flags []string) ([]string, error) {
	var out []string
	for _, f := range flags {
		name, ok := StartupFlagName(f)
		if !ok || strings.ContainsAny(f, "\x00\n") || len(f) > 4096 {
			return nil, fmt.Errorf("startup option %q is not a --flag", f)
		}
		if overriddenStartupFlags[name] || overriddenStartupFlags[strings.TrimPrefix(name, "no")] {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}
