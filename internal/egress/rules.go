package egress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
)

// Mode is an egress mode (offline, allow-list, audit).
type Mode = netpolicy.Mode

// GitHubAllow is the built-in allow-list of GitHub jobs: what the Actions
// runner and the common actions need (the runner's service and results
// hosts, git over HTTPS, release and package downloads, artifact and cache
// storage). *.blob.core.windows.net is all of Azure Blob storage, where
// GitHub keeps artifacts and caches; an operator who needs neither can
// replace the list.
var GitHubAllow = []string{
	"github.com",
	"api.github.com",
	"codeload.github.com",
	"uploads.github.com",
	"*.actions.githubusercontent.com",
	"objects.githubusercontent.com",
	"objects-origin.githubusercontent.com",
	"release-assets.githubusercontent.com",
	"github-releases.githubusercontent.com",
	"github-registry-files.githubusercontent.com",
	"pkg-containers.githubusercontent.com",
	"raw.githubusercontent.com",
	"ghcr.io",
	"*.pkg.github.com",
	"*.blob.core.windows.net",
}

// Source names of jobs, as the control plane records them.
const (
	SourceAPI    = "api"
	SourceGitHub = "github"
	// SourceRBS is a remote Bazel session (its Bazel server's network).
	SourceRBS = "rbs"
)

// Rules decide each job's egress policy from its org, labels and source.
// The zero value gives API jobs and remote Bazel sessions the offline mode
// and GitHub jobs the allow-list mode with GitHubAllow. Sessions start
// from Default too; rules with `sources: [rbs]` open them.
type Rules struct {
	// Default is the starting point of API-submitted jobs.
	Default PolicyConfig `yaml:"default"`
	// GitHub is the starting point of GitHub jobs: GitHubAllow plus Allow,
	// or Allow alone with replace_builtin.
	GitHub GitHubConfig `yaml:"github"`
	// Rules apply in order to the jobs they match.
	Rules []Rule `yaml:"rules"`
}

// PolicyConfig is a mode and an allow-list.
type PolicyConfig struct {
	Mode  Mode     `yaml:"mode"`
	Allow []string `yaml:"allow"`
}

// GitHubConfig is the starting policy of GitHub jobs.
type GitHubConfig struct {
	Mode           Mode     `yaml:"mode"`
	Allow          []string `yaml:"allow"`
	ReplaceBuiltin bool     `yaml:"replace_builtin"`
}

// Rule changes the policy of the jobs it matches: every listed org (any
// when none), every listed label (the job has them all), every listed
// source (api, github).
type Rule struct {
	Orgs    []string `yaml:"orgs"`
	Labels  []string `yaml:"labels"`
	Sources []string `yaml:"sources"`
	// Mode, when set, replaces the mode so far.
	Mode Mode `yaml:"mode"`
	// Allow adds to the allow-list so far; with Replace it replaces it.
	Allow   []string `yaml:"allow"`
	Replace bool     `yaml:"replace"`
}

// LoadRules reads a rules file (YAML; unknown keys are errors).
func LoadRules(path string) (Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Rules{}, fmt.Errorf("egress policy file: %w", err)
	}
	return ParseRules(data)
}

// ParseRules decodes and validates rules; errors name the bad entry.
func ParseRules(data []byte) (Rules, error) {
	var r Rules
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		return Rules{}, fmt.Errorf("egress policy file: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Rules{}, fmt.Errorf("egress policy file: %w", err)
	}
	return r, nil
}

// Validate checks every mode and allow-list entry.
func (r Rules) Validate() error {
	check := func(where string, m Mode, allow []string) error {
		if m != "" {
			if _, err := netpolicy.ParseMode(string(m)); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		if err := (netpolicy.Policy{Mode: netpolicy.ModeAllowList, Allow: allow}).Validate(); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		return nil
	}
	if err := check("default", r.Default.Mode, r.Default.Allow); err != nil {
		return err
	}
	if err := check("github", r.GitHub.Mode, r.GitHub.Allow); err != nil {
		return err
	}
	for i, rule := range r.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if err := check(where, rule.Mode, rule.Allow); err != nil {
			return err
		}
		for _, s := range rule.Sources {
			if s != SourceAPI && s != SourceGitHub && s != SourceRBS {
				return fmt.Errorf("%s: source %q: want api, github or rbs", where, s)
			}
		}
	}
	return nil
}

// JobFacts are what rules match on.
type JobFacts struct {
	Org    string
	Labels []string
	Source string
}

// For returns the policy of a job.
func (r Rules) For(j JobFacts) apiv1.EgressPolicy {
	var p apiv1.EgressPolicy
	if j.Source == SourceGitHub {
		p.Mode = string(netpolicy.ModeAllowList)
		if r.GitHub.Mode != "" {
			p.Mode = string(r.GitHub.Mode)
		}
		if !r.GitHub.ReplaceBuiltin {
			p.Allow = append(p.Allow, GitHubAllow...)
		}
		p.Allow = append(p.Allow, r.GitHub.Allow...)
	} else {
		p.Mode = string(netpolicy.ModeOffline)
		if r.Default.Mode != "" {
			p.Mode = string(r.Default.Mode)
		}
		p.Allow = append(p.Allow, r.Default.Allow...)
	}
	for _, rule := range r.Rules {
		if !rule.matches(j) {
			continue
		}
		if rule.Mode != "" {
			p.Mode = string(rule.Mode)
		}
		if rule.Replace {
			p.Allow = nil
		}
		p.Allow = append(p.Allow, rule.Allow...)
	}
	p.Allow = dedupe(p.Allow)
	return p
}

func (rule Rule) matches(j JobFacts) bool {
	if len(rule.Orgs) > 0 && !slices.Contains(rule.Orgs, j.Org) {
		return false
	}
	if len(rule.Sources) > 0 && !slices.Contains(rule.Sources, j.Source) {
		return false
	}
	for _, l := range rule.Labels {
		if !slices.Contains(j.Labels, l) {
			return false
		}
	}
	return true
}

func dedupe(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
