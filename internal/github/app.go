package github

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is github.com's REST API. GitHub Enterprise Server serves it
// at https://HOST/api/v3.
const DefaultBaseURL = "https://api.github.com"

// AppConfig configures an App. AppID or ClientID, and PrivateKeyPEM, are
// required; the rest have defaults.
type AppConfig struct {
	// AppID is the App's numeric id.
	AppID int64
	// ClientID is the App's client id ("Iv23..."). When set it is the JWT
	// issuer, as GitHub recommends; otherwise AppID is.
	ClientID string
	// PrivateKeyPEM is the App's RSA private key, PKCS#1 or PKCS#8 PEM.
	PrivateKeyPEM []byte
	// BaseURL is the REST API root: DefaultBaseURL by default, GHES's
	// https://HOST/api/v3, or an emulator in tests.
	BaseURL string
	// HTTPClient sends requests; by default a client with a 30 s timeout.
	HTTPClient *http.Client
	// Now is the clock for JWTs and token expiry; time.Now by default.
	Now func() time.Time
	// Logger receives operational logs; discarded by default.
	Logger *slog.Logger
	// UserAgent is sent on every request; "nimbus" by default.
	UserAgent string

	// MaxAttempts bounds the tries of one request that keeps failing
	// transiently (5xx, 429, rate limits, network errors); 3 by default.
	MaxAttempts int
	// RetryBaseDelay is the first backoff delay, doubled on each retry and
	// jittered; 500 ms by default.
	RetryBaseDelay time.Duration
	// MaxRetryDelay caps one wait between tries; 10 s by default. When
	// GitHub asks (Retry-After, rate limit reset) for a longer wait, the
	// error is returned instead, with APIError.RetryAfter set.
	MaxRetryDelay time.Duration
	// Sleep waits between tries; by default a timer that stops when ctx is
	// done. Tests inject one to observe the waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

// App is a GitHub App client. It is safe for concurrent use.
type App struct {
	issuer any // string client id, or int64 app id
	key    *rsa.PrivateKey
	rest   *restClient
	now    func() time.Time
	log    *slog.Logger
	tokens *tokenCache
}

// NewApp validates cfg and returns an App.
func NewApp(cfg AppConfig) (*App, error) {
	a := &App{now: cfg.Now, log: cfg.Logger}
	switch {
	case cfg.ClientID != "":
		if !validPathName(cfg.ClientID, maxLoginLen) {
			return nil, errors.New("github app config: ClientID has invalid characters")
		}
		a.issuer = cfg.ClientID
	case cfg.AppID > 0:
		a.issuer = cfg.AppID
	default:
		return nil, errors.New("github app config: AppID or ClientID is required")
	}
	if len(cfg.PrivateKeyPEM) == 0 {
		return nil, errors.New("github app config: PrivateKeyPEM is required")
	}
	key, err := parsePrivateKey(cfg.PrivateKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("github app config: PrivateKeyPEM: %w", err)
	}
	a.key = key
	base, err := normalizeBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("github app config: BaseURL: %w", err)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("component", "github")
	a.rest = &restClient{
		baseURL:     base,
		http:        cfg.HTTPClient,
		userAgent:   cfg.UserAgent,
		maxAttempts: cfg.MaxAttempts,
		baseDelay:   cfg.RetryBaseDelay,
		maxDelay:    cfg.MaxRetryDelay,
		sleep:       cfg.Sleep,
		now:         a.now,
		log:         a.log,
	}
	if err := a.rest.setDefaults(); err != nil {
		return nil, fmt.Errorf("github app config: %w", err)
	}
	a.tokens = newTokenCache(a.now, a.fetchInstallationToken)
	return a, nil
}

func (c *restClient) setDefaults() error {
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	if c.userAgent == "" {
		c.userAgent = "nimbus"
	}
	switch {
	case c.maxAttempts < 0:
		return fmt.Errorf("MaxAttempts is %d, must not be negative", c.maxAttempts)
	case c.maxAttempts == 0:
		c.maxAttempts = 3
	}
	switch {
	case c.baseDelay < 0:
		return fmt.Errorf("RetryBaseDelay is %v, must not be negative", c.baseDelay)
	case c.baseDelay == 0:
		c.baseDelay = 500 * time.Millisecond
	}
	switch {
	case c.maxDelay < 0:
		return fmt.Errorf("MaxRetryDelay is %v, must not be negative", c.maxDelay)
	case c.maxDelay == 0:
		c.maxDelay = 10 * time.Second
	}
	if c.sleep == nil {
		c.sleep = sleepContext
	}
	return nil
}

// normalizeBaseURL checks an API root and drops its trailing slash.
func normalizeBaseURL(s string) (string, error) {
	if s == "" {
		return DefaultBaseURL, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return "", fmt.Errorf("scheme must be https or http, got %q", u.Scheme)
	case u.Host == "":
		return "", errors.New("host is missing")
	case u.User != nil:
		return "", errors.New("must not carry credentials")
	case u.RawQuery != "" || u.Fragment != "":
		return "", errors.New("must not have a query or fragment")
	}
	return strings.TrimRight(s, "/"), nil
}

// InstallationToken returns an access token for the installation, from the
// cache while it has more than 5 minutes left, else freshly issued.
// Concurrent callers for one installation share one request. The token is a
// secret: never log it or hand it to job code.
func (a *App) InstallationToken(ctx context.Context, installationID int64) (string, error) {
	if installationID <= 0 {
		return "", fmt.Errorf("installation token: installation id must be positive, got %d", installationID)
	}
	tok, _, err := a.tokens.get(ctx, installationID)
	if err != nil {
		return "", fmt.Errorf("installation token for %d: %w", installationID, err)
	}
	return tok, nil
}

// fetchInstallationToken exchanges an App JWT for an installation token.
func (a *App) fetchInstallationToken(ctx context.Context, id int64) (installationToken, error) {
	jwt, err := a.appJWT()
	if err != nil {
		return installationToken{}, err
	}
	var resp struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	path := "/app/installations/" + strconv.FormatInt(id, 10) + "/access_tokens"
	if err := a.rest.do(ctx, http.MethodPost, path, "Bearer "+jwt, nil, http.StatusCreated, &resp); err != nil {
		return installationToken{}, err
	}
	if resp.Token == "" || len(resp.Token) > 4096 || strings.ContainsFunc(resp.Token, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return installationToken{}, fmt.Errorf("github api POST %s: response has no usable token", path)
	}
	exp, err := time.Parse(time.RFC3339, resp.ExpiresAt)
	if err != nil {
		return installationToken{}, fmt.Errorf("github api POST %s: expires_at: %w", path, err)
	}
	if !exp.After(a.now()) {
		a.log.WarnContext(ctx, "installation token already expired on arrival; is the clock right?",
			"installation_id", id, "expires_at", exp)
	}
	a.log.DebugContext(ctx, "installation token issued", "installation_id", id, "expires_at", exp)
	return installationToken{value: resp.Token, expiresAt: exp}, nil
}

// installationDo sends a request authenticated as the installation. When
// GitHub refuses a cached token (401: revoked, or the installation changed)
// the token is dropped and the request sent once more with a fresh one.
func (a *App) installationDo(ctx context.Context, id int64, method, path string, body []byte, want int, out any) error {
	tok, cached, err := a.tokens.get(ctx, id)
	if err != nil {
		return fmt.Errorf("installation token for %d: %w", id, err)
	}
	err = a.rest.do(ctx, method, path, "Bearer "+tok, body, want, out)
	var ae *APIError
	if !cached || !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		return err
	}
	a.log.InfoContext(ctx, "cached installation token refused; fetching a new one", "installation_id", id)
	a.tokens.drop(id, tok)
	if tok, _, err = a.tokens.get(ctx, id); err != nil {
		return fmt.Errorf("installation token for %d: %w", id, err)
	}
	return a.rest.do(ctx, method, path, "Bearer "+tok, body, want, out)
}
