package jobcred

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/cache/access"
)

func mayAll(access.Action) bool { return true }

func mayRead(a access.Action) bool { return a == access.Read }

func mayNothing(access.Action) bool { return false }

// TestDecide is the rules as a table: the submitter's rights bound the
// grant, the source's trust bounds it further, and the Actions cache
// scopes follow GitHub's.
func TestDecide(t *testing.T) {
	main := "refs/heads/main"
	tests := []struct {
		name  string
		src   Source
		trust Trust
		may   func(access.Action) bool
		want  Grant
	}{
		{"API job of a ci token", Source{}, Trust{}, mayAll,
			Grant{Read: true, Write: true, WriteAC: true, ActionsCache: true, Scope: "", ReadScopes: []string{""}}},
		{"API job of a developer token", Source{}, Trust{}, mayRead,
			Grant{Read: true, ActionsCache: true, Scope: "", ReadScopes: []string{""}}},
		{"API job of a revoked token", Source{}, Trust{}, mayNothing, Grant{}},
		{"push to the default branch", Source{Ref: main, DefaultRef: main}, Trust{}, mayAll,
			Grant{Read: true, Write: true, WriteAC: true, ActionsCache: true, Scope: main, ReadScopes: []string{main}}},
		{"push to a feature branch", Source{Ref: "refs/heads/f", DefaultRef: main}, Trust{}, mayAll,
			Grant{Read: true, Write: true, WriteAC: true, ActionsCache: true, Scope: "refs/heads/f", ReadScopes: []string{"refs/heads/f", main}}},
		{"pull request from the same repository", Source{Ref: "refs/pull/7/merge", BaseRef: "refs/heads/rel", DefaultRef: main}, Trust{}, mayAll,
			Grant{Read: true, Write: true, WriteAC: false, ActionsCache: true, Scope: "refs/pull/7/merge",
				ReadScopes: []string{"refs/pull/7/merge", "refs/heads/rel", main}}},
		{"pull request from a fork", Source{Ref: "refs/pull/8/merge", BaseRef: main, DefaultRef: main, Fork: true}, Trust{}, mayAll,
			Grant{Read: true, ActionsCache: true, Scope: "refs/pull/8/merge", ReadScopes: []string{"refs/pull/8/merge", main}}},
		{"a ref the org marks untrusted", Source{Ref: "refs/heads/exp/x", DefaultRef: main}, Trust{UntrustedRefs: []string{"refs/heads/exp/*"}}, mayAll,
			Grant{Read: true, ActionsCache: true, Scope: "refs/heads/exp/x", ReadScopes: []string{"refs/heads/exp/x", main}}},
		{"action cache writes narrowed to main: a branch", Source{Ref: "refs/heads/f", DefaultRef: main}, Trust{ACWriteRefs: []string{main}}, mayAll,
			Grant{Read: true, Write: true, ActionsCache: true, Scope: "refs/heads/f", ReadScopes: []string{"refs/heads/f", main}}},
		{"action cache writes narrowed to main: main", Source{Ref: main, DefaultRef: main}, Trust{ACWriteRefs: []string{main}}, mayAll,
			Grant{Read: true, Write: true, WriteAC: true, ActionsCache: true, Scope: main, ReadScopes: []string{main}}},
		{"action cache writes opened to pull requests", Source{Ref: "refs/pull/7/merge", DefaultRef: main}, Trust{ACWriteRefs: []string{"refs/*"}}, mayAll,
			Grant{Read: true, Write: true, WriteAC: true, ActionsCache: true, Scope: "refs/pull/7/merge", ReadScopes: []string{"refs/pull/7/merge", main}}},
		{"a fork stays read-only whatever the org opens", Source{Ref: "refs/pull/8/merge", DefaultRef: main, Fork: true}, Trust{ACWriteRefs: []string{"refs/*"}}, mayAll,
			Grant{Read: true, ActionsCache: true, Scope: "refs/pull/8/merge", ReadScopes: []string{"refs/pull/8/merge", main}}},
		{"unknown source", Source{Unknown: true, DefaultRef: main}, Trust{}, mayAll,
			Grant{Read: true, ActionsCache: true, Scope: unreachableScope, ReadScopes: []string{main}}},
		{"unknown source without a default branch", Source{Unknown: true}, Trust{}, mayAll, Grant{Read: true}},
		{"a developer's fork-free push still cannot write", Source{Ref: main, DefaultRef: main}, Trust{}, mayRead,
			Grant{Read: true, ActionsCache: true, Scope: main, ReadScopes: []string{main}}},
	}
	for _, tc := range tests {
		got := Decide(tc.src, tc.trust, tc.may)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestScopes(t *testing.T) {
	g := Grant{Read: true, Write: true, ActionsCache: true, Scope: "refs/pull/7/merge", ReadScopes: []string{"refs/pull/7/merge", "refs/heads/main"}}
	want := []string{"cache.read", "cache.write", "cache.ref=refs/pull/7/merge", "cache.readref=refs/heads/main"}
	if diff := cmp.Diff(want, g.Scopes()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if s := (Grant{Read: true}).Scopes(); len(s) != 1 {
		t.Errorf("no Actions cache: %v", s)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		ref      string
		want     bool
	}{
		{[]string{"refs/heads/main"}, "refs/heads/main", true},
		{[]string{"refs/heads/main"}, "refs/heads/main2", false},
		{[]string{"refs/heads/rel/*"}, "refs/heads/rel/1.0", true},
		{[]string{"refs/heads/rel/*"}, "refs/heads/release", false},
		{[]string{"*"}, "refs/pull/1/merge", true},
		{nil, "refs/heads/main", false},
	} {
		if got := Match(tc.patterns, tc.ref); got != tc.want {
			t.Errorf("Match(%v, %q) = %v", tc.patterns, tc.ref, got)
		}
	}
}

// FuzzValidatePatterns: an org's patterns come from an admin's request;
// what is accepted is a ref or a prefix ending in one "*", and matching
// never panics.
func FuzzValidatePatterns(f *testing.F) {
	f.Add("refs/heads/main", "refs/heads/main")
	f.Add("refs/heads/rel/*", "refs/heads/rel/1")
	f.Add("*", "refs/pull/1/merge")
	f.Add("refs/*/x", "refs/a/x")
	f.Add("main", "main")
	f.Fuzz(func(t *testing.T, p, ref string) {
		err := ValidatePatterns("f", []string{p})
		Match([]string{p}, ref)
		if err != nil {
			return
		}
		body, _ := strings.CutSuffix(p, "*")
		if strings.Contains(body, "*") || (p != "*" && !strings.HasPrefix(p, "refs/")) || strings.ContainsAny(p, " \t\n\r\x00") {
			t.Fatalf("accepted %q", p)
		}
		if !strings.HasSuffix(p, "*") && Match([]string{p}, ref) != (p == ref) {
			t.Fatalf("exact pattern %q matched %q", p, ref)
		}
	})
}
