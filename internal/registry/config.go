package registry

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config configures the registry. The zero value serves an org's own
// repositories only, with no upstreams.
type Config struct {
	// Upstreams are the registries pulled through, addressed as
	// HOST/<name>/<repository>.
	Upstreams []UpstreamConfig `yaml:"upstreams"`
	// Mirror names the upstream that serves names without an upstream
	// prefix: the one Docker's registry-mirrors setting reaches (Docker
	// Hub). Empty: none.
	Mirror string `yaml:"mirror"`
	// Default is the policy of orgs without an entry in Orgs.
	Default OrgPolicy `yaml:"default"`
	// Orgs are per-org policies by org id; an entry replaces Default.
	Orgs map[string]OrgPolicy `yaml:"orgs"`
	// TagTTL is how long a pulled-through tag is served before it is
	// checked upstream again (a HEAD with the cached digest). Default 5m.
	// (A flag, --registry-tag-ttl, not a key of the file.)
	TagTTL time.Duration `yaml:"-"`
}

// UpstreamConfig is one registry pulled through.
type UpstreamConfig struct {
	// Name is the first path component that selects it: a repository
	// name component such as "docker.io" or "ghcr.io".
	Name string `yaml:"name"`
	// URL is the registry's root, e.g. https://registry-1.docker.io.
	URL string `yaml:"url"`
	// Library: a one-component name is looked up under "library/", as
	// Docker Hub's official images are. Default: on for Docker Hub's
	// host, off elsewhere.
	Library *bool `yaml:"library"`
	// Username and PasswordFile are credentials of the whole server
	// for this upstream (e.g. a Docker Hub account that lifts the
	// anonymous rate limit). What they fetch counts as public: every org
	// allowed the upstream may pull it. The password is sealed into the
	// database at start; later starts need only the username.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`

	password []byte // read from PasswordFile at load
}

// OrgPolicy is what one org may pull, with which credentials, and which
// signatures it requires.
type OrgPolicy struct {
	// Upstreams the org may pull through (names); empty: all.
	Upstreams []string `yaml:"upstreams"`
	// Repositories the org may pull through, as patterns over
	// "<upstream>/<repository>" ("*" within a component, "**" any number
	// of components): e.g. docker.io/library/*, ghcr.io/acme/**. Empty:
	// all of the allowed upstreams.
	Repositories []string `yaml:"repositories"`
	// Credentials are the org's own credentials for upstreams, by
	// upstream name. Images pulled with them are the org's alone (in the
	// default policy: each org's alone, as if each had them). Passwords
	// are sealed into the database at start.
	Credentials map[string]Credential `yaml:"credentials"`
	// Signatures, when set, makes pulls of the matching repositories
	// require a valid cosign signature from one of the keys.
	Signatures *SignaturePolicy `yaml:"signatures"`
}

// Credential is a username and a file holding the password or token.
type Credential struct {
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`

	password []byte
}

// SignaturePolicy requires cosign signatures.
type SignaturePolicy struct {
	// Keys are PEM public key files (ECDSA, RSA or Ed25519), as `cosign
	// generate-key-pair` writes cosign.pub. A signature from any of them
	// is enough.
	Keys []string `yaml:"keys"`
	// Repositories (patterns, as OrgPolicy.Repositories) whose pulls need
	// a signature. Empty: every pulled-through repository.
	Repositories []string `yaml:"repositories"`
	// Own: the org's own (pushed) repositories need signatures too.
	Own bool `yaml:"own"`

	keys []crypto.PublicKey
}

// LoadConfig reads a registry configuration file (YAML; unknown keys are
// errors). Validate checks it (and reads the files it names) once the
// flags have added to it; New validates too.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("registry config: %w", err)
	}
	return ParseConfig(data)
}

// ParseConfig decodes a configuration strictly (see LoadConfig).
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("registry config: %w", err)
	}
	return c, nil
}

// Validate checks the configuration and loads the files it names.
// Errors name the setting.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("registry config: "+format, args...)) }
	names := map[string]bool{}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		where := fmt.Sprintf("upstreams[%d]", i)
		if !validComponent(u.Name) {
			bad("%s: name %q: one lowercase repository name component, e.g. ghcr.io", where, u.Name)
		} else if names[u.Name] {
			bad("%s: name %q: listed twice", where, u.Name)
		}
		names[u.Name] = true
		pu, err := url.Parse(u.URL)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" ||
			strings.Trim(pu.Path, "/") != "" || pu.RawQuery != "" || pu.User != nil {
			bad("%s (%s): url %q: want http(s)://host[:port], no path", where, u.Name, u.URL)
		}
		if u.PasswordFile != "" {
			if u.Username == "" {
				bad("%s (%s): password_file without username", where, u.Name)
			}
			if u.password, err = readSecretFile(u.PasswordFile); err != nil {
				bad("%s (%s): password_file: %v", where, u.Name, err)
			}
		}
	}
	if c.Mirror != "" && !names[c.Mirror] {
		bad("mirror: %q is not an upstream", c.Mirror)
	}
	if c.TagTTL < 0 {
		bad("tag_ttl: negative")
	}
	check := func(where string, p *OrgPolicy) {
		for _, n := range p.Upstreams {
			if !names[n] {
				bad("%s: upstreams: %q is not an upstream", where, n)
			}
		}
		for _, pat := range p.Repositories {
			if !validPattern(pat) {
				bad("%s: repositories: pattern %q", where, pat)
			}
		}
		for up, cr := range p.Credentials {
			if !names[up] {
				bad("%s: credentials: %q is not an upstream", where, up)
			}
			if cr.Username == "" {
				bad("%s: credentials: %s: username required", where, up)
			}
			if cr.PasswordFile != "" {
				pw, err := readSecretFile(cr.PasswordFile)
				if err != nil {
					bad("%s: credentials: %s: password_file: %v", where, up, err)
				}
				cr.password = pw
				p.Credentials[up] = cr
			}
		}
		if s := p.Signatures; s != nil {
			if len(s.Keys) == 0 {
				bad("%s: signatures: keys: at least one public key file", where)
			}
			s.keys = nil
			for _, f := range s.Keys {
				k, err := loadPublicKey(f)
				if err != nil {
					bad("%s: signatures: keys: %v", where, err)
					continue
				}
				s.keys = append(s.keys, k)
			}
			for _, pat := range s.Repositories {
				if !validPattern(pat) {
					bad("%s: signatures: repositories: pattern %q", where, pat)
				}
			}
		}
	}
	check("default", &c.Default)
	for org := range c.Orgs {
		p := c.Orgs[org]
		if org == "" {
			bad("orgs: empty org id")
		}
		check("orgs."+org, &p)
		c.Orgs[org] = p
	}
	return errors.Join(errs...)
}

// Upstream returns the upstream named n.
func (c *Config) upstream(n string) *UpstreamConfig {
	for i := range c.Upstreams {
		if c.Upstreams[i].Name == n {
			return &c.Upstreams[i]
		}
	}
	return nil
}

// policy returns org's policy.
func (c *Config) policy(org string) *OrgPolicy {
	if p, ok := c.Orgs[org]; ok {
		return &p
	}
	return &c.Default
}

// ParseUpstreamFlag parses "name=url" (the --registry-upstreams form).
func ParseUpstreamFlag(s string) (UpstreamConfig, error) {
	name, u, ok := strings.Cut(s, "=")
	if !ok || name == "" || u == "" {
		return UpstreamConfig{}, fmt.Errorf("upstream %q: want name=url, e.g. ghcr.io=https://ghcr.io", s)
	}
	return UpstreamConfig{Name: name, URL: u}, nil
}

// readSecretFile reads a password or token file, without its trailing
// newline.
func readSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}

// library reports whether one-component names get "library/".
func (u *UpstreamConfig) library() bool {
	if u.Library != nil {
		return *u.Library
	}
	pu, err := url.Parse(u.URL)
	return err == nil && (pu.Hostname() == "registry-1.docker.io" || pu.Hostname() == "docker.io" || pu.Hostname() == "index.docker.io")
}
