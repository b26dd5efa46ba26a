package registry

import (
	"context"
	"fmt"
	"strings"
)

// repo is a repository name resolved for one org: one of the org's own
// repositories, or a repository of an upstream. Everything the registry
// keeps for it lives under the org (Org), whoever else pulled the same
// name: two orgs never share a tag, a manifest or a blob entry, only the
// deduplicated bytes under them.
type repo struct {
	// Name is the repository as the client wrote it.
	Name string
	Org  string
	// Up is the upstream; nil for an own repository.
	Up *upstream
	// Remote is the repository's name upstream (Docker Hub's official
	// images get "library/"), or the own repository's name without the
	// org prefix.
	Remote string
	// Policy is the name the org's policy patterns match:
	// "<upstream>/<remote>" (mirror pulls included), or for an own
	// repository the name under the org's prefix.
	Policy string
}

// key names the repository in the org's records (tags).
func (p repo) key() string {
	if p.Up == nil {
		return "own\x00" + p.Remote
	}
	return "up\x00" + p.Up.cfg.Name + "\x00" + p.Remote
}

// resolve maps a repository name to what it is for org:
//
//   - <org id>/<repo>, or <org name>/<repo> when the org's name is a valid
//     name component (not "library", no ".", not an upstream's name): the
//     org's own repository;
//   - <upstream>/<repo>: that upstream's repository;
//   - anything else: the mirror upstream's repository (Docker's
//     registry-mirrors sends Docker Hub names as they are).
//
// A name the org may not pull (an upstream or repository its policy does
// not allow, no mirror) is errNameUnknown, as is a name that does not
// exist: the answer never says whether something exists for others.
func (r *Registry) resolve(ctx context.Context, org, name string) (repo, error) {
	first, rest, _ := strings.Cut(name, "/")
	if rest != "" && (first == org || first == r.ownAlias(ctx, org)) {
		return repo{Name: name, Org: org, Remote: rest, Policy: name}, nil
	}
	var up *upstream
	remote := name
	if u, ok := r.upstreams[first]; ok && rest != "" {
		up, remote = u, rest
	} else if r.cfg.Mirror != "" {
		up = r.upstreams[r.cfg.Mirror]
	}
	if up == nil {
		return repo{}, fmt.Errorf("%w: %s", errNameUnknown, name)
	}
	if up.cfg.library() && !strings.Contains(remote, "/") {
		remote = "library/" + remote
	}
	p := repo{Name: name, Org: org, Up: up, Remote: remote, Policy: up.cfg.Name + "/" + remote}
	pol := r.cfg.policy(org)
	if len(pol.Upstreams) > 0 && !contains(pol.Upstreams, up.cfg.Name) {
		return repo{}, fmt.Errorf("%w: %s", errNameUnknown, name)
	}
	if !matchAny(pol.Repositories, p.Policy, true) {
		return repo{}, fmt.Errorf("%w: %s", errNameUnknown, name)
	}
	return p, nil
}

// ownAlias is the org's name when it can stand for the org in a
// repository name, else "".
func (r *Registry) ownAlias(ctx context.Context, org string) string {
	n := r.orgName(ctx, org)
	if n == "" || n == "library" || strings.Contains(n, ".") || !validComponent(n) {
		return ""
	}
	if _, ok := r.upstreams[n]; ok {
		return ""
	}
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
