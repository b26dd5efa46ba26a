package sso

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// GitHub is "Sign in with GitHub" through the GitHub App's OAuth client
// (a user-to-server token): the person's account, verified primary
// e-mail and membership of the orgs the rules name, read from the API.
type GitHub struct {
	cfg    GitHubConfig
	api    string
	orgs   []string
	client *http.Client
}

var _ Provider = (*GitHub)(nil)

// NewGitHub returns the provider; apiURL is the REST API root, orgs the
// GitHub orgs whose membership matters.
func NewGitHub(c GitHubConfig, apiURL string, orgs []string, client *http.Client) *GitHub {
	return &GitHub{cfg: c, api: strings.TrimRight(apiURL, "/"), orgs: orgs, client: client}
}

// Name implements Provider.
func (g *GitHub) Name() string { return GitHubProviderName }

// Label implements Provider.
func (g *GitHub) Label() string { return "GitHub" }

// StepUp implements Provider.
func (g *GitHub) StepUp() bool { return g.cfg.StepUp }

func (g *GitHub) oauth(redirectURL string) *oauth2.Config {
	return &oauth2.Config{ClientID: g.cfg.ClientID, ClientSecret: g.cfg.ClientSecret, RedirectURL: redirectURL,
		Endpoint: oauth2.Endpoint{AuthURL: g.cfg.WebURL + "/login/oauth/authorize", TokenURL: g.cfg.WebURL + "/login/oauth/access_token",
			AuthStyle: oauth2.AuthStyleInParams}}
}

// AuthURL implements Provider.
func (g *GitHub) AuthURL(ctx context.Context, redirectURL string, a Attempt) (string, error) {
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(a.Verifier)}
	if a.StepUp {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "select_account"))
	}
	return g.oauth(redirectURL).AuthCodeURL(a.State, opts...), nil
}

// Finish implements Provider.
func (g *GitHub) Finish(ctx context.Context, redirectURL, code string, a Attempt) (Identity, error) {
	tok, err := g.oauth(redirectURL).Exchange(context.WithValue(ctx, oauth2.HTTPClient, g.client), code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: GitHub did not accept the code: %v", ErrRefused, err)
	}
	var user struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Name  string `json:"name"`
	}
	if status, err := g.get(ctx, tok.AccessToken, "/user", &user); err != nil || status != http.StatusOK || user.ID == 0 {
		return Identity{}, fmt.Errorf("%w: GitHub /user: status %d: %v", ErrRefused, status, err)
	}
	id := Identity{Provider: GitHubProviderName, Subject: strconv.FormatInt(user.ID, 10), GitHubLogin: user.Login,
		Name: user.Name, GitHubOrgs: map[string]string{}, AuthAt: time.Now()}
	if id.Name == "" {
		id.Name = user.Login
	}
	// The primary address, if GitHub says it is verified; without the
	// App's "Email addresses" permission there is none.
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if status, err := g.get(ctx, tok.AccessToken, "/user/emails", &emails); err != nil {
		return Identity{}, err
	} else if status == http.StatusOK {
		for _, e := range emails {
			if e.Primary && e.Verified {
				id.Email, id.EmailVerified = e.Email, true
			}
		}
	}
	for _, org := range g.orgs {
		var m struct {
			State string `json:"state"`
			Role  string `json:"role"`
		}
		status, err := g.get(ctx, tok.AccessToken, "/user/memberships/orgs/"+url.PathEscape(org), &m)
		if err != nil {
			return Identity{}, err
		}
		if status == http.StatusOK && m.State == "active" {
			id.GitHubOrgs[org] = m.Role
		}
	}
	return id, nil
}

// get reads one API document; a 4xx is a status, not an error.
func (g *GitHub) get(ctx context.Context, token, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", g.api+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GitHub %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode >= 500 {
			return resp.StatusCode, fmt.Errorf("GitHub %s: status %d", path, resp.StatusCode)
		}
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("GitHub %s: %w", path, err)
	}
	return resp.StatusCode, nil
}
