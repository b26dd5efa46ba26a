package jobcred

import (
	"slices"
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/access"
)

// Source is where a job's code comes from.
type Source struct {
	// Ref is the ref the job runs for, as GITHUB_REF names it:
	// refs/heads/<branch>, refs/tags/<tag> or refs/pull/<n>/merge. Empty
	// for jobs submitted through the API, which use the org-wide scope.
	Ref string
	// BaseRef is a pull request's base branch (refs/heads/main).
	BaseRef string
	// DefaultRef is the repository's default branch (refs/heads/main).
	DefaultRef string
	// Fork: the code comes from another repository (a pull request from
	// a fork).
	Fork bool
	// Unknown: where the code comes from could not be established (the
	// GitHub API could not be asked, or did not say): not trusted, and no
	// Actions cache scope of its own.
	Unknown bool
}

// Trust is an org's settings (store.CacheTrust). A pattern is a full ref
// or a prefix ending in "*".
type Trust struct {
	// UntrustedRefs: jobs for these refs get read-only credentials.
	UntrustedRefs []string
	// ACWriteRefs: trusted jobs for these refs may write the Bazel action
	// cache. Nil means DefaultACWriteRefs.
	ACWriteRefs []string
}

// DefaultACWriteRefs are the refs whose trusted jobs may write the Bazel
// action cache when an org has not said: every branch and tag, never a
// pull request (its code is not reviewed yet).
var DefaultACWriteRefs = []string{"refs/heads/*", "refs/tags/*"}

// Match reports whether ref matches one of patterns.
func Match(patterns []string, ref string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(ref, prefix) {
				return true
			}
		} else if p == ref {
			return true
		}
	}
	return false
}

// Grant is what a job may do with the cache.
type Grant struct {
	Read, Write, WriteAC bool
	// ActionsCache: the job has an Actions cache scope; Scope is the one
	// it saves under ("" is the org-wide scope of API jobs) and
	// ReadScopes the ones it restores from, in order.
	ActionsCache bool
	Scope        string
	ReadScopes   []string
}

// Decide applies the rules to a job from src in an org with trust, whose
// submitter may do what may says.
func Decide(src Source, trust Trust, may func(a access.Action) bool) Grant {
	acRefs := trust.ACWriteRefs
	if acRefs == nil {
		acRefs = DefaultACWriteRefs
	}
	trusted := !src.Unknown && !src.Fork && (src.Ref == "" || !Match(trust.UntrustedRefs, src.Ref))
	g := Grant{Read: may(access.Read)}
	if !g.Read {
		return Grant{}
	}
	g.Write = trusted && may(access.Write)
	g.WriteAC = trusted && may(access.WriteAC) && (src.Ref == "" || Match(acRefs, src.Ref))
	if src.Unknown {
		// No scope of its own; it may still restore the default branch's.
		if src.DefaultRef != "" {
			g.ActionsCache = true
			g.Scope = unreachableScope
			g.ReadScopes = []string{src.DefaultRef}
			g.Write = false
		}
		return g
	}
	g.ActionsCache = true
	g.Scope = src.Ref
	for _, r := range []string{src.Ref, src.BaseRef, src.DefaultRef} {
		if (r != "" || src.Ref == "") && !slices.Contains(g.ReadScopes, r) {
			g.ReadScopes = append(g.ReadScopes, r)
		}
	}
	return g
}

// unreachableScope is the own scope of a job whose ref is unknown: no
// other job reads it (and such a job may not save anyway).
const unreachableScope = "nimbus:unknown-source"

// Scope prefixes of a job credential (read by internal/cache/actionscache).
const (
	ScopeRef     = "cache.ref="
	ScopeReadRef = "cache.readref="
)

// Scopes is the grant as the scopes of a job credential.
func (g Grant) Scopes() []string {
	var s []string
	for _, a := range []struct {
		ok bool
		a  access.Action
	}{{g.Read, access.Read}, {g.Write, access.Write}, {g.WriteAC, access.WriteAC}} {
		if a.ok {
			s = append(s, string(a.a))
		}
	}
	if g.ActionsCache {
		s = append(s, ScopeRef+g.Scope)
		for _, r := range g.ReadScopes {
			if r != g.Scope {
				s = append(s, ScopeReadRef+r)
			}
		}
	}
	return s
}
