package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// TrustDomain is the authority of every identity URI this CA issues.
const TrustDomain = "nimbus"

// Kind says what sort of holder an Identity names.
type Kind string

const (
	// KindUser is a person (or CI system) acting through their credentials.
	KindUser Kind = "user"
	// KindAgent is an enrolled build host.
	KindAgent Kind = "agent"
	// KindServer is a control plane replica.
	KindServer Kind = "server"
)

// ErrNoIdentity means a certificate carries no Nimbus identity, or more than one.
var ErrNoIdentity = errors.New("certificate carries no single nimbus identity")

// Identity is who a certificate was issued to, scoped to an org.
type Identity struct {
	Org  string
	Kind Kind
	Name string
}

// UserIdentity returns the identity of user name in org.
func UserIdentity(org, name string) Identity { return Identity{Org: org, Kind: KindUser, Name: name} }

// AgentIdentity returns the identity of agent id in org.
func AgentIdentity(org, id string) Identity { return Identity{Org: org, Kind: KindAgent, Name: id} }

// Validate reports whether every part of id is well formed. Org and name
// are safe to use as single path components.
func (id Identity) Validate() error {
	if err := ValidateName(id.Org); err != nil {
		return fmt.Errorf("org: %w", err)
	}
	switch id.Kind {
	case KindUser, KindAgent, KindServer:
	default:
		return fmt.Errorf("kind %q: must be user, agent or server", id.Kind)
	}
	if err := ValidateName(id.Name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	return nil
}

// ValidateName checks that s is a name usable in an identity and as one
// path component: 1 to 64 characters of [A-Za-z0-9._-], starting with a
// letter or a digit (so never "." or "..").
func ValidateName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", s)
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-'):
		default:
			return fmt.Errorf("%q: only letters, digits, '.', '_' and '-' are allowed, starting with a letter or digit", s)
		}
	}
	return nil
}

// URI returns the identity as a SPIFFE-style URI.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/org/" + id.Org + "/" + string(id.Kind) + "/" + id.Name}
}

// String returns the URI form of id.
func (id Identity) String() string { return id.URI().String() }

// ParseIdentity parses the URI form written by Identity.URI.
func ParseIdentity(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Identity{}, fmt.Errorf("parse identity %q: %w", s, err)
	}
	return identityFromURL(u)
}

func identityFromURL(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.Host != TrustDomain || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Identity{}, fmt.Errorf("identity %q: not a spiffe://%s/ URI", u.String(), TrustDomain)
	}
	parts := strings.Split(u.Path, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "org" {
		return Identity{}, fmt.Errorf("identity %q: want /org/<org>/<kind>/<name>", u.String())
	}
	id := Identity{Org: parts[2], Kind: Kind(parts[3]), Name: parts[4]}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("identity %q: %w", u.String(), err)
	}
	return id, nil
}

// IdentityFromCert returns the one Nimbus identity in cert's URI SANs.
func IdentityFromCert(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		id, err := identityFromURL(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	if len(found) != 1 {
		return Identity{}, ErrNoIdentity
	}
	return found[0], nil
}
