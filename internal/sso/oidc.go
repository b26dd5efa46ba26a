package sso

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDC is an OpenID Connect provider. Its discovery document is fetched
// at the first sign-in (and again after a failure), so the server starts
// while the provider is down.
type OIDC struct {
	cfg    OIDCConfig
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
}

var _ Provider = (*OIDC)(nil)

// NewOIDC returns the provider of c.
func NewOIDC(c OIDCConfig, client *http.Client) *OIDC { return &OIDC{cfg: c, client: client} }

// Name implements Provider.
func (o *OIDC) Name() string { return o.cfg.Name }

// Label implements Provider.
func (o *OIDC) Label() string { return o.cfg.Label }

// StepUp implements Provider: max_age=0 asks for a new authentication
// and the ID token's auth_time proves it happened.
func (o *OIDC) StepUp() bool { return true }

func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover OIDC provider %s: %w", o.cfg.Name, err)
	}
	o.provider = p
	return p, nil
}

func (o *OIDC) oauth(p *oidc.Provider, redirectURL string) *oauth2.Config {
	return &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: redirectURL, Scopes: append([]string{oidc.ScopeOpenID}, o.cfg.Scopes...)}
}

// AuthURL implements Provider.
func (o *OIDC) AuthURL(ctx context.Context, redirectURL string, a Attempt) (string, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(a.Nonce), oauth2.S256ChallengeOption(a.Verifier)}
	if a.StepUp {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", "0"), oauth2.SetAuthURLParam("prompt", "login"))
	}
	return o.oauth(p, redirectURL).AuthCodeURL(a.State, opts...), nil
}

// clockSkew is how far the provider's clock may be from ours.
const clockSkew = time.Minute

// Finish implements Provider: the code is exchanged (with the PKCE
// verifier), the ID token verified (signature, issuer, audience, expiry)
// and its nonce checked; claims the token lacks are read from the
// userinfo endpoint, whose subject must be the token's.
func (o *OIDC) Finish(ctx context.Context, redirectURL, code string, a Attempt) (Identity, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	ctx = oidc.ClientContext(ctx, o.client)
	tok, err := o.oauth(p, redirectURL).Exchange(ctx, code, oauth2.VerifierOption(a.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %s did not accept the code: %v", ErrRefused, o.cfg.Name, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: %s sent no ID token", ErrRefused, o.cfg.Name)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: ID token from %s: %v", ErrRefused, o.cfg.Name, err)
	}
	if idt.Nonce != a.Nonce {
		return Identity{}, fmt.Errorf("%w: ID token from %s: wrong nonce (replayed?)", ErrRefused, o.cfg.Name)
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: ID token claims: %v", ErrRefused, err)
	}
	if p.UserInfoEndpoint() != "" {
		ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return Identity{}, fmt.Errorf("%w: userinfo of %s: %v", ErrRefused, o.cfg.Name, err)
		}
		if ui.Subject != idt.Subject {
			return Identity{}, fmt.Errorf("%w: userinfo of %s is about another subject", ErrRefused, o.cfg.Name)
		}
		var extra map[string]any
		if err := ui.Claims(&extra); err == nil {
			for k, v := range extra {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}
	id := Identity{Provider: o.cfg.Name, Subject: idt.Subject, Email: str(claims["email"]),
		EmailVerified: truthy(claims["email_verified"]), Name: str(claims["name"]), Groups: strs(claims[o.cfg.GroupsClaim])}
	if id.Name == "" {
		id.Name = str(claims["preferred_username"])
	}
	authAt, hasAuthTime := authTime(claims["auth_time"])
	now := time.Now()
	switch {
	case a.StepUp && !hasAuthTime:
		return Identity{}, fmt.Errorf("%w: %s did not say when you authenticated (auth_time): it cannot confirm a step-up", ErrRefused, o.cfg.Name)
	case a.StepUp && authAt.Before(a.Started.Add(-clockSkew)):
		return Identity{}, fmt.Errorf("%w: %s did not ask you to authenticate again (auth_time %s)", ErrRefused, o.cfg.Name, authAt.UTC().Format(time.RFC3339))
	case !hasAuthTime || authAt.After(now):
		authAt = now
	}
	id.AuthAt = authAt
	return id, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// truthy reads a boolean claim, which some providers send as a string.
func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// strs reads a list claim (or a single string), keeping strings only.
func strs(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func authTime(v any) (time.Time, bool) {
	switch v := v.(type) {
	case float64:
		return time.Unix(int64(v), 0), v > 0
	case json.Number:
		n, err := v.Int64()
		return time.Unix(n, 0), err == nil && n > 0
	}
	return time.Time{}, false
}
