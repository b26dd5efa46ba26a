package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/cache/breaker"
)

// creds are the credentials an upstream request is made with. id names
// who they belong to: "" for the server's own (or none: anonymous),
// whose fetches any org allowed the upstream may share; an org id for an
// org's private credentials, whose fetches only that org sees.
type creds struct {
	id         string
	user, pass string
}

func (c creds) basic() bool { return c.user != "" || c.pass != "" }

// upstream is a registry pulled through: requests under its /v2/, with
// the registry token protocol's dance done for the caller (anonymous
// tokens for Docker Hub-style registries, Basic credentials exchanged at
// the realm, or Basic auth where the upstream asks for it) and tokens
// kept until they expire.
type upstream struct {
	cfg    *UpstreamConfig
	base   string // scheme://host
	client *http.Client
	now    func() time.Time
	m      *metrics

	mu     sync.Mutex
	tokens map[tokenKey]cachedToken
	// basicOnly: the upstream asked for Basic auth, not tokens.
	basicOnly bool
}

type tokenKey struct {
	id, scope string
}

type cachedToken struct {
	token   string
	expires time.Time
}

// maxTokens bounds the token cache; past it, it is cleared.
const maxTokens = 10000

func newUpstream(cfg *UpstreamConfig, rt http.RoundTripper, now func() time.Time, m *metrics, log *slog.Logger) *upstream {
	u, _ := url.Parse(cfg.URL)
	// While the upstream fails, requests fail at once: pulls of cached
	// tags are served stale at once instead of after a timeout each.
	br := breaker.New(breaker.Options{Name: "registry upstream " + cfg.Name, Logger: log, Now: now})
	return &upstream{
		cfg: cfg, base: u.Scheme + "://" + u.Host, now: now, m: m,
		client: &http.Client{Transport: &breaker.Transport{Breaker: br, Next: rt}, CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("more than 5 redirects")
			}
			if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
				return fmt.Errorf("redirect to %s", req.URL.Scheme)
			}
			return nil
		}},
		tokens: map[tokenKey]cachedToken{},
	}
}

// do sends method to /v2/<remote>/<path> of the upstream with cr and
// returns the response, whatever its status (the caller reads it). A 401
// is answered by the token dance once.
func (u *upstream) do(ctx context.Context, cr creds, method, remote, path string, hdr http.Header) (*http.Response, error) {
	target := u.base + "/v2/" + remote + "/" + path
	scope := scopeString(remote, actionPull)
	send := func(authz string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, target, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errUpstream, err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", "nimbus-registry")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := u.client.Do(req)
		u.m.upstreamRequest(u.cfg.Name, method, resp, err)
		if err != nil {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return nil, fmt.Errorf("%w: %s %s: %v", errUpstream, method, u.cfg.Name, err)
		}
		return resp, nil
	}
	resp, err := send(u.authorization(cr, scope))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	challenges, cerr := ParseChallenges(resp.Header.Values("WWW-Authenticate"))
	drain(resp)
	if cerr != nil {
		return nil, cerr
	}
	authz, err := u.authenticate(ctx, cr, scope, challenges)
	if err != nil {
		return nil, err
	}
	return send(authz)
}

// authorization is the Authorization header to try first: a cached token,
// or Basic credentials for an upstream that asked for them.
func (u *upstream) authorization(cr creds, scope string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.basicOnly && cr.basic() {
		return basicAuth(cr)
	}
	if t, ok := u.tokens[tokenKey{cr.id, scope}]; ok && u.now().Before(t.expires) {
		return "Bearer " + t.token
	}
	return ""
}

// authenticate answers the upstream's challenges: a Bearer challenge by
// fetching a token from its realm (with Basic credentials when cr has
// them, anonymously otherwise), a Basic one with cr.
func (u *upstream) authenticate(ctx context.Context, cr creds, scope string, cs []Challenge) (string, error) {
	for _, c := range cs {
		if c.Scheme != "bearer" {
			continue
		}
		realm := c.Params["realm"]
		ru, err := url.Parse(realm)
		if err != nil || (ru.Scheme != "https" && ru.Scheme != "http") || ru.Host == "" {
			return "", fmt.Errorf("%w: %s: token realm %q", errUpstream, u.cfg.Name, clip(realm))
		}
		q := ru.Query()
		if s := c.Params["service"]; s != "" {
			q.Set("service", s)
		}
		q.Set("scope", scope)
		ru.RawQuery = q.Encode()
		tok, ttl, err := u.fetchToken(ctx, cr, ru.String())
		if err != nil {
			return "", err
		}
		u.mu.Lock()
		if len(u.tokens) >= maxTokens {
			clear(u.tokens)
		}
		u.tokens[tokenKey{cr.id, scope}] = cachedToken{token: tok, expires: u.now().Add(ttl)}
		u.mu.Unlock()
		return "Bearer " + tok, nil
	}
	for _, c := range cs {
		if c.Scheme == "basic" {
			if !cr.basic() {
				return "", fmt.Errorf("%w: %s asks for credentials", errUpstreamDenied, u.cfg.Name)
			}
			u.mu.Lock()
			u.basicOnly = true
			u.mu.Unlock()
			return basicAuth(cr), nil
		}
	}
	return "", fmt.Errorf("%w: %s: no challenge this registry can answer", errUpstreamDenied, u.cfg.Name)
}

// fetchToken gets a token from a realm; ttl is a little under what the
// realm says (at least 60 s by the protocol's default).
func (u *upstream) fetchToken(ctx context.Context, cr creds, realm string) (string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm, nil)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", errUpstream, err)
	}
	if cr.basic() {
		req.SetBasicAuth(cr.user, cr.pass)
	}
	req.Header.Set("User-Agent", "nimbus-registry")
	resp, err := u.client.Do(req)
	u.m.upstreamRequest(u.cfg.Name, "token", resp, err)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %s token: %v", errUpstream, u.cfg.Name, err)
	}
	defer drain(resp)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", 0, fmt.Errorf("%w: %s token endpoint answered %d", errUpstreamDenied, u.cfg.Name, resp.StatusCode)
	case resp.StatusCode == http.StatusTooManyRequests:
		return "", 0, fmt.Errorf("%w: %s token endpoint", errUpstreamThrottled, u.cfg.Name)
	case resp.StatusCode != http.StatusOK:
		return "", 0, fmt.Errorf("%w: %s token endpoint answered %d", errUpstream, u.cfg.Name, resp.StatusCode)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&tr); err != nil {
		return "", 0, fmt.Errorf("%w: %s token: %v", errUpstream, u.cfg.Name, err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" || strings.ContainsAny(tok, " \r\n") {
		return "", 0, fmt.Errorf("%w: %s token endpoint sent no usable token", errUpstream, u.cfg.Name)
	}
	ttl := time.Duration(max(tr.ExpiresIn, 60)) * time.Second
	return tok, ttl - ttl/10, nil
}

func basicAuth(cr creds) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(cr.user, cr.pass)
	return r.Header.Get("Authorization")
}

// drain reads a little of an unwanted body so the connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// statusError turns an upstream's non-success status into the registry's
// error: 404 is unknown, 401/403 (after the token dance) denied, 429
// throttled, anything else the upstream failing.
func statusError(u *upstream, resp *http.Response, what string) error {
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s not found on %s", errManifestUnknown, what, u.cfg.Name)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s: %s answered %d", errUpstreamDenied, what, u.cfg.Name, resp.StatusCode)
	case resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: %s: %s", errUpstreamThrottled, what, u.cfg.Name)
	}
	return fmt.Errorf("%w: %s: %s answered %d", errUpstream, what, u.cfg.Name, resp.StatusCode)
}
