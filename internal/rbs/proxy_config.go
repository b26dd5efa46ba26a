package rbs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// JavabaseConfigFile is the name of the proxy's configuration file in a
// javabase directory, next to bin/java.
const JavabaseConfigFile = "nimbus-rbs.json"

// Values of ProxyConfig.Outputs.
const (
	OutputsTopLevel = "toplevel"
	OutputsNone     = "none"
)

// ProxyConfig configures the proxy. `nimbus rbs init` writes it, as JSON,
// into the javabase directory; the proxy reads it strictly (unknown keys are
// errors).
type ProxyConfig struct {
	// Server is the control plane's base URL, e.g. https://nimbus.example.com.
	Server string `json:"server"`
	// Credentials is the path of the user's credentials file, the one
	// `nimbus ctl` uses.
	Credentials string `json:"credentials"`
	// CAFile, when set, is a PEM bundle trusted for the control plane's
	// certificate instead of the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// ClientEnv adds environment variable names (NAME, or a NAME* prefix)
	// to those the proxy lets through to the remote server as --client_env
	// (see proxy.DefaultClientEnv).
	ClientEnv []string `json:"client_env,omitempty"`
	// Outputs is OutputsTopLevel (default: a command's top-level outputs
	// are brought back so bazel-bin/... works locally) or OutputsNone (the
	// storage is mounted on this machine, or outputs are not wanted).
	Outputs string `json:"outputs,omitempty"`
	// Debug makes the proxy log every RPC to <output_base>/server/jvm.out.
	Debug bool `json:"debug,omitempty"`
}

// Validate checks the configuration, naming the bad field.
func (c ProxyConfig) Validate() error {
	if c.Server == "" {
		return errors.New("server: missing")
	}
	u, err := url.Parse(c.Server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("server: %q is not an http(s) URL", c.Server)
	}
	if c.Credentials == "" || !filepath.IsAbs(c.Credentials) {
		return fmt.Errorf("credentials: %q must be an absolute path", c.Credentials)
	}
	if c.CAFile != "" && !filepath.IsAbs(c.CAFile) {
		return fmt.Errorf("ca_file: %q must be an absolute path", c.CAFile)
	}
	switch c.Outputs {
	case "", OutputsTopLevel, OutputsNone:
	default:
		return fmt.Errorf("outputs: %q must be %q or %q", c.Outputs, OutputsTopLevel, OutputsNone)
	}
	for _, n := range c.ClientEnv {
		if n == "" || strings.ContainsAny(strings.TrimSuffix(n, "*"), "=*\x00") {
			return fmt.Errorf("client_env: bad name %q", n)
		}
	}
	return nil
}

// ParseProxyConfig decodes and validates a configuration.
func ParseProxyConfig(r io.Reader) (ProxyConfig, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var c ProxyConfig
	if err := dec.Decode(&c); err != nil {
		return ProxyConfig{}, fmt.Errorf("parse proxy config: %w", err)
	}
	if dec.More() {
		return ProxyConfig{}, errors.New("parse proxy config: trailing data")
	}
	if err := c.Validate(); err != nil {
		return ProxyConfig{}, fmt.Errorf("proxy config: %w", err)
	}
	return c, nil
}

// LoadProxyConfig reads a configuration file.
func LoadProxyConfig(path string) (ProxyConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ProxyConfig{}, fmt.Errorf("load proxy config: %w", err)
	}
	c, err := ParseProxyConfig(bytes.NewReader(b))
	if err != nil {
		return ProxyConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

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
