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
	// ClientCert and ClientKey, when set, are the user's certificate (from
	// the control plane's CA, obtained by `nimbus rbs init`) and key,
	// presented to the control plane: mutual TLS on that hop too.
	ClientCert string `json:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty"`
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
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return errors.New("client_cert and client_key go together")
	}
	for name, p := range map[string]string{"client_cert": c.ClientCert, "client_key": c.ClientKey} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%s: %q must be an absolute path", name, p)
		}
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
