// Package sso signs people in to the dashboard: OpenID Connect providers
// (any issuer, github.com/coreos/go-oidc), "Sign in with GitHub" through
// the GitHub App's OAuth client, and the rules that map who someone is
// (e-mail, e-mail domain, IdP group, GitHub org membership) to roles in
// Nimbus's orgs. The configuration is one YAML file, decoded strictly.
package sso

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// Config is the dashboard's sign-in configuration.
type Config struct {
	Session   SessionConfig `yaml:"session"`
	Providers []OIDCConfig  `yaml:"providers"`
	GitHub    *GitHubConfig `yaml:"github"`
	Rules     []Rule        `yaml:"rules"`
}

// SessionConfig bounds sessions (zero: the defaults).
type SessionConfig struct {
	Idle     time.Duration `yaml:"idle"`
	Lifetime time.Duration `yaml:"lifetime"`
	StepUp   time.Duration `yaml:"step_up"`
}

// OIDCConfig is one OpenID Connect provider.
type OIDCConfig struct {
	// Name is the provider in URLs (/login/NAME) and user ids.
	Name string `yaml:"name"`
	// Label is what the sign-in button says.
	Label    string `yaml:"label"`
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret (ClientSecret inline is
	// accepted for tests and discouraged).
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecret     string `yaml:"client_secret"`
	// Scopes asked for besides openid (default: email profile).
	Scopes []string `yaml:"scopes"`
	// GroupsClaim names the claim listing the person's groups (default
	// "groups").
	GroupsClaim string `yaml:"groups_claim"`
}

// GitHubConfig is "Sign in with GitHub" through the GitHub App's OAuth
// client.
type GitHubConfig struct {
	// ClientID is the GitHub App's client id (default: the server's
	// --github-client-id).
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	ClientSecret     string `yaml:"client_secret"`
	// WebURL is where people sign in (https://github.com, or a GitHub
	// Enterprise Server's root); the API is the server's --github-api-url.
	WebURL string `yaml:"web_url"`
	// StepUp lets a new round trip through GitHub count as step-up.
	// GitHub does not re-ask for the password (it has no max_age), so it
	// is off by default: step-up then needs an OIDC provider.
	StepUp bool `yaml:"step_up"`
}

// Rule grants a role in an org to the people it matches. Every matcher
// that is set must match; at least one must be set.
type Rule struct {
	Org  string `yaml:"org"`
	Role string `yaml:"role"`
	// Provider limits the rule to one provider's sign-ins ("github" for
	// GitHub's).
	Provider string `yaml:"provider"`
	// Email and EmailDomain match a verified e-mail address.
	Email       string `yaml:"email"`
	EmailDomain string `yaml:"email_domain"`
	// Group matches a group in the provider's groups claim.
	Group string `yaml:"group"`
	// GitHubOrg matches an active member of a GitHub org (GitHub sign-in
	// only); GitHubOrgRole "admin" narrows it to the org's owners.
	GitHubOrg     string `yaml:"github_org"`
	GitHubOrgRole string `yaml:"github_org_role"`
}

// GitHubProviderName is the provider name of GitHub sign-ins.
const GitHubProviderName = "github"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Load reads and checks a configuration file. Unknown keys are errors.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	return Parse(b)
}

// Parse decodes and checks a configuration document.
func Parse(b []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("decode: %w", err)
	}
	return c, c.Validate()
}

// RoleOf reads a role as rules spell it: Nimbus's roles, and "member"
// for developer (the role of people who run builds).
func RoleOf(s string) (auth.Role, bool) {
	if s == "member" {
		return auth.RoleDeveloper, true
	}
	r := auth.Role(s)
	return r, r.Valid()
}

// Validate checks c; errors name the field.
func (c *Config) Validate() error {
	seen := map[string]bool{}
	for i := range c.Providers {
		p := &c.Providers[i]
		at := fmt.Sprintf("providers[%d]", i)
		switch {
		case !nameRE.MatchString(p.Name):
			return fmt.Errorf("%s.name: %q: lower-case letters, digits and dashes, at most 32", at, p.Name)
		case p.Name == GitHubProviderName:
			return fmt.Errorf("%s.name: %q is GitHub's sign-in (configure it under github:)", at, p.Name)
		case seen[p.Name]:
			return fmt.Errorf("%s.name: %q named twice", at, p.Name)
		case !strings.HasPrefix(p.Issuer, "https://") && !strings.HasPrefix(p.Issuer, "http://"):
			return fmt.Errorf("%s.issuer: %q is not an http(s) URL", at, p.Issuer)
		case p.ClientID == "":
			return fmt.Errorf("%s.client_id: required", at)
		}
		seen[p.Name] = true
		if err := loadSecret(&p.ClientSecret, p.ClientSecretFile, at); err != nil {
			return err
		}
		if p.Label == "" {
			p.Label = p.Name
		}
		if p.GroupsClaim == "" {
			p.GroupsClaim = "groups"
		}
		if p.Scopes == nil {
			p.Scopes = []string{"email", "profile"}
		}
	}
	if g := c.GitHub; g != nil {
		if err := loadSecret(&g.ClientSecret, g.ClientSecretFile, "github"); err != nil {
			return err
		}
		if g.WebURL == "" {
			g.WebURL = "https://github.com"
		}
		g.WebURL = strings.TrimRight(g.WebURL, "/")
	}
	for i, r := range c.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		if r.Org == "" {
			return fmt.Errorf("%s.org: required (an org's name)", at)
		}
		if _, ok := RoleOf(r.Role); !ok {
			return fmt.Errorf("%s.role: %q is not one of viewer, member, developer, ci, admin, owner", at, r.Role)
		}
		if r.Email == "" && r.EmailDomain == "" && r.Group == "" && r.GitHubOrg == "" {
			return fmt.Errorf("%s: needs at least one of email, email_domain, group, github_org", at)
		}
		if r.Provider != "" && !seen[r.Provider] && r.Provider != GitHubProviderName {
			return fmt.Errorf("%s.provider: %q is not a configured provider", at, r.Provider)
		}
		if r.GitHubOrgRole != "" && r.GitHubOrgRole != "admin" && r.GitHubOrgRole != "member" {
			return fmt.Errorf("%s.github_org_role: %q: admin or member", at, r.GitHubOrgRole)
		}
		if r.GitHubOrgRole != "" && r.GitHubOrg == "" {
			return fmt.Errorf("%s.github_org_role: needs github_org", at)
		}
		if strings.HasPrefix(r.EmailDomain, "@") {
			return fmt.Errorf("%s.email_domain: %q: without the @", at, r.EmailDomain)
		}
	}
	return nil
}

func loadSecret(secret *string, file, at string) error {
	switch {
	case file != "" && *secret != "":
		return fmt.Errorf("%s: client_secret and client_secret_file: choose one", at)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("%s.client_secret_file: %w", at, err)
		}
		*secret = strings.TrimSpace(string(b))
	}
	if *secret == "" {
		return errors.New(at + ": a client secret is required (client_secret_file)")
	}
	return nil
}
