package github

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// RunnerTarget says where a runner is registered: at an organization or at a
// single repository. Exactly one field is set.
type RunnerTarget struct {
	Org  string // organization login
	Repo string // "owner/name"
}

// TargetFor returns where the runner for ev's job should be registered: the
// organization when the repository is owned by one, else the repository
// itself (user accounts have no org-level runners).
func TargetFor(ev WorkflowJobEvent) RunnerTarget {
	if ev.Repository.Owner.Type == AccountOrganization {
		return RunnerTarget{Org: ev.Repository.Owner.Login}
	}
	return RunnerTarget{Repo: ev.Repository.FullName}
}

// Validate checks that exactly one field is set and that it is made of valid
// GitHub names.
func (t RunnerTarget) Validate() error {
	switch {
	case t.Org != "" && t.Repo != "":
		return errors.New("runner target: both Org and Repo are set")
	case t.Org != "":
		if !validPathName(t.Org, maxLoginLen) {
			return fmt.Errorf("runner target: org %q is not a valid login", truncate(t.Org, maxLoginLen))
		}
	case t.Repo != "":
		owner, name, ok := strings.Cut(t.Repo, "/")
		if !ok || !validPathName(owner, maxLoginLen) || !validPathName(name, maxRepoNameLen) {
			return fmt.Errorf("runner target: repo %q is not owner/name", truncate(t.Repo, maxLoginLen+maxRepoNameLen+1))
		}
	default:
		return errors.New("runner target: neither Org nor Repo is set")
	}
	return nil
}

func (t RunnerTarget) String() string {
	if t.Org != "" {
		return "org " + t.Org
	}
	return "repo " + t.Repo
}

// runnersPath is the target's ".../actions/runners" API path. t must be valid.
func (t RunnerTarget) runnersPath() string {
	if t.Org != "" {
		return "/orgs/" + url.PathEscape(t.Org) + "/actions/runners"
	}
	owner, name, _ := strings.Cut(t.Repo, "/")
	return "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/actions/runners"
}
