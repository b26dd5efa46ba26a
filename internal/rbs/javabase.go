package rbs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteJavabase makes dir a Bazel server javabase that runs the proxy:
// dir/nimbus-rbs.json holds cfg, and dir/bin/java is a shell script that
// execs command (the nimbus binary and its proxy subcommand, e.g.
// ["/usr/local/bin/nimbus", "rbs", "proxy"]) with --config=<the file>
// followed by the arguments the Bazel client passed. dir must be absolute.
func WriteJavabase(dir string, command []string, cfg ProxyConfig) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("write javabase: %q is not absolute", dir)
	}
	if len(command) == 0 || !filepath.IsAbs(command[0]) {
		return errors.New("write javabase: command must start with an absolute path")
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("write javabase: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return fmt.Errorf("write javabase: %w", err)
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("write javabase: %w", err)
	}
	cfgPath := filepath.Join(dir, JavabaseConfigFile)
	if err := os.WriteFile(cfgPath, append(cfgJSON, '\n'), 0o644); err != nil {
		return fmt.Errorf("write javabase: %w", err)
	}
	var script strings.Builder
	script.WriteString("#!/bin/sh\n# Written by nimbus: the Bazel client starts its server as this file, which\n# runs the Nimbus remote Bazel proxy instead (see docs/remote-bazel.md).\nexec")
	for _, a := range append(command, "--config="+cfgPath) {
		script.WriteString(" " + ShellQuote(a))
	}
	script.WriteString(" \"$@\"\n")
	javaPath := filepath.Join(dir, "bin", "java")
	tmp := javaPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(script.String()), 0o755); err != nil {
		return fmt.Errorf("write javabase: %w", err)
	}
	if err := os.Rename(tmp, javaPath); err != nil {
		return fmt.Errorf("write javabase: %w", err)
	}
	return nil
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// BazelrcLine is the .bazelrc line pointing Bazel at a javabase.
func BazelrcLine(javabaseDir string) string {
	return "startup --server_javabase=" + javabaseDir
}

// AddToBazelrc appends BazelrcLine to workspace/.bazelrc unless a line
// setting --server_javabase is already there (it is then replaced).
func AddToBazelrc(workspace, javabaseDir string) error {
	path := filepath.Join(workspace, ".bazelrc")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("update .bazelrc: %w", err)
	}
	var lines []string
	replaced := false
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "startup") && strings.Contains(l, "--server_javabase") {
			if !replaced {
				lines = append(lines, BazelrcLine(javabaseDir))
				replaced = true
			}
			continue
		}
		lines = append(lines, l)
	}
	if !replaced {
		lines = append(lines, BazelrcLine(javabaseDir))
	}
	out := strings.TrimLeft(strings.Join(lines, "\n"), "\n") + "\n"
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return fmt.Errorf("update .bazelrc: %w", err)
	}
	return nil
}
