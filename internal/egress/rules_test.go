package egress

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
)

func TestRulesFor(t *testing.T) {
	r, err := ParseRules([]byte(`
default:
  mode: allow-list
  allow: [proxy.golang.org]
github:
  allow: [pypi.org]
rules:
  - labels: [gpu]
    mode: audit
  - orgs: [org_b]
    sources: [github]
    replace: true
    allow: ["*.internal.example.com", 203.0.113.0/24]
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		job  JobFacts
		want apiv1.EgressPolicy
	}{
		{"api", JobFacts{Org: "org_a", Source: SourceAPI}, apiv1.EgressPolicy{Mode: "allow-list", Allow: []string{"proxy.golang.org"}}},
		{"api gpu", JobFacts{Org: "org_a", Source: SourceAPI, Labels: []string{"linux", "gpu"}},
			apiv1.EgressPolicy{Mode: "audit", Allow: []string{"proxy.golang.org"}}},
		{"github", JobFacts{Org: "org_a", Source: SourceGitHub}, apiv1.EgressPolicy{Mode: "allow-list", Allow: append(slices.Clone(GitHubAllow), "pypi.org")}},
		{"github org_b", JobFacts{Org: "org_b", Source: SourceGitHub},
			apiv1.EgressPolicy{Mode: "allow-list", Allow: []string{"*.internal.example.com", "203.0.113.0/24"}}},
		{"api org_b", JobFacts{Org: "org_b", Source: SourceAPI}, apiv1.EgressPolicy{Mode: "allow-list", Allow: []string{"proxy.golang.org"}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, r.For(tt.job)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	// The zero rules: API jobs offline, GitHub jobs the built-in list.
	if got := (Rules{}).For(JobFacts{Source: SourceAPI}); got.Mode != "offline" || len(got.Allow) != 0 {
		t.Errorf("zero rules, API job: %+v", got)
	}
	if got := (Rules{}).For(JobFacts{Source: SourceGitHub}); got.Mode != "allow-list" || !slices.Equal(got.Allow, GitHubAllow) {
		t.Errorf("zero rules, GitHub job: %+v", got)
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"defaults: {}", "field defaults not found"},
		{"default: {mode: open}", `egress mode "open"`},
		{"rules: [{allow: ['exa mple.com']}]", "rules[0]"},
		{"rules: [{sources: [cron]}]", `source "cron"`},
		{"github: {allow: ['*']}", "github"},
		{"default: {allow: ['10.0.0.0/33']}", "10.0.0.0/33"},
	} {
		_, err := ParseRules([]byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.doc, err, tt.want)
		}
	}
	if _, err := ParseRules(nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add([]byte("default: {mode: audit}\nrules: [{labels: [x], allow: [a.b]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRules(data)
		if err != nil {
			return
		}
		for _, src := range []string{SourceAPI, SourceGitHub} {
			p := r.For(JobFacts{Org: "o", Source: src, Labels: []string{"x"}})
			if err := netpolicy.PolicyFrom(p).Validate(); err != nil && !strings.Contains(err.Error(), "entries, at most") {
				t.Fatalf("rules accepted but the policy is invalid: %v", err)
			}
		}
	})
}
