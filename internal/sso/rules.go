package sso

import (
	"strings"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// Roles returns, for each org (by name) some rule grants id a role in,
// the strongest role granted.
func Roles(rules []Rule, id Identity) map[string]auth.Role {
	out := map[string]auth.Role{}
	for _, r := range rules {
		if !r.matches(id) {
			continue
		}
		role, _ := RoleOf(r.Role)
		if rank(role) > rank(out[r.Org]) {
			out[r.Org] = role
		}
	}
	return out
}

func rank(r auth.Role) int {
	for i, x := range auth.Roles {
		if x == r {
			return i + 1
		}
	}
	return 0
}

func (r Rule) matches(id Identity) bool {
	if r.Provider != "" && r.Provider != id.Provider {
		return false
	}
	email := strings.ToLower(id.Email)
	if r.Email != "" && (!id.EmailVerified || email != strings.ToLower(r.Email)) {
		return false
	}
	if r.EmailDomain != "" {
		_, domain, ok := strings.Cut(email, "@")
		if !id.EmailVerified || !ok || domain != strings.ToLower(r.EmailDomain) {
			return false
		}
	}
	if r.Group != "" && !containsFold(id.Groups, r.Group, false) {
		return false
	}
	if r.GitHubOrg != "" {
		if id.Provider != GitHubProviderName {
			return false
		}
		role, ok := id.GitHubOrgs[strings.ToLower(r.GitHubOrg)]
		if !ok || (r.GitHubOrgRole == "admin" && role != "admin") {
			return false
		}
	}
	return true
}

// containsFold reports whether list holds s (case-insensitively when fold).
func containsFold(list []string, s string, fold bool) bool {
	for _, x := range list {
		if x == s || (fold && strings.EqualFold(x, s)) {
			return true
		}
	}
	return false
}

// GitHubOrgs lists the GitHub orgs the rules name (lower case): the
// memberships a GitHub sign-in looks up.
func GitHubOrgs(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		if o := strings.ToLower(r.GitHubOrg); o != "" && !containsFold(out, o, false) {
			out = append(out, o)
		}
	}
	return out
}
