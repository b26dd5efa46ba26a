package sso

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Identity is who signed in, as the provider vouches for it.
type Identity struct {
	// Provider is the provider's name; Subject its stable id of the
	// person (OIDC "sub", GitHub's numeric user id).
	Provider string
	Subject  string
	Email    string
	// EmailVerified: the provider says the address is the person's.
	// Only verified addresses match e-mail rules.
	EmailVerified bool
	Name          string
	// Groups are the provider's groups claim.
	Groups []string
	// GitHubLogin and GitHubOrgs (lower-case org → "admin" or "member",
	// active memberships of the orgs the rules name) for GitHub sign-ins.
	GitHubLogin string
	GitHubOrgs  map[string]string
	// AuthAt is when the person authenticated at the provider.
	AuthAt time.Time
}

// Attempt is one sign-in round trip: what goes to the provider and what
// its answer is checked against.
type Attempt struct {
	State    string
	Nonce    string
	Verifier string // PKCE; the challenge sent is its S256
	// StepUp asks the provider to authenticate the person again, now.
	StepUp  bool
	Started time.Time
}

// Provider is a way to sign in.
type Provider interface {
	Name() string
	Label() string
	// StepUp reports whether the provider can re-authenticate on request.
	StepUp() bool
	// AuthURL is where to send the browser to sign in.
	AuthURL(ctx context.Context, redirectURL string, a Attempt) (string, error)
	// Finish exchanges the callback's code for the identity.
	Finish(ctx context.Context, redirectURL, code string, a Attempt) (Identity, error)
}

// ErrRefused marks a sign-in the provider or its answer refused (the
// person sees the message; nothing is internal about it).
var ErrRefused = errors.New("sign-in refused")

// Providers builds the providers of c. apiURL is GitHub's API root and
// clientID the GitHub App's client id (used when c.GitHub names none).
func Providers(c Config, githubAPIURL, githubClientID string, client *http.Client) []Provider {
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	var out []Provider
	for _, p := range c.Providers {
		out = append(out, NewOIDC(p, client))
	}
	if g := c.GitHub; g != nil {
		gc := *g
		if gc.ClientID == "" {
			gc.ClientID = githubClientID
		}
		out = append(out, NewGitHub(gc, githubAPIURL, GitHubOrgs(c.Rules), client))
	}
	return out
}
