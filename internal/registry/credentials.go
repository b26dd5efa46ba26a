package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

// credentials gives each upstream request its credentials: the org's
// own for that upstream (its private pulls, kept under its id), else the
// server's for the upstream (shared), else none. Passwords given in the
// configuration are sealed into the secrets store at start under
// "registry-credential/<org or _server>/<upstream>", so a later start (or
// another replica) needs only the usernames.
type credentials struct {
	cfg     *Config
	secrets Secrets
	log     *slog.Logger

	mu     sync.Mutex
	cache  map[string]cachedPassword
	inline map[string][]byte // without a secrets store
}

type cachedPassword struct {
	pass   []byte
	loaded time.Time
}

// credentialTTL bounds how long a password is cached (another replica may
// have resealed it).
const credentialTTL = time.Minute

// Owners of credentials in secret names that are not an org: the
// server's own, and the default policy's (each org without an entry uses
// them as its own).
const (
	serverCredentialOwner  = "_server"
	defaultCredentialOwner = "_default"
)

func newCredentials(cfg *Config, sec Secrets, log *slog.Logger) *credentials {
	return &credentials{cfg: cfg, secrets: sec, log: log, cache: map[string]cachedPassword{}, inline: map[string][]byte{}}
}

func secretName(owner, upstream string) string {
	return "registry-credential/" + owner + "/" + upstream
}

// seal stores the configured passwords.
func (c *credentials) seal(ctx context.Context) error {
	put := func(owner, up string, pw []byte) error {
		if pw == nil {
			return nil
		}
		name := secretName(owner, up)
		if c.secrets == nil {
			c.inline[name] = pw
			return nil
		}
		b, _ := json.Marshal(map[string]string{"password": string(pw)})
		if err := c.secrets.Put(ctx, name, b); err != nil {
			return fmt.Errorf("seal registry credential %s: %w", name, err)
		}
		return nil
	}
	for _, u := range c.cfg.Upstreams {
		if err := put(serverCredentialOwner, u.Name, u.password); err != nil {
			return err
		}
	}
	for org, p := range c.cfg.Orgs {
		for up, cr := range p.Credentials {
			if err := put(org, up, cr.password); err != nil {
				return err
			}
		}
	}
	for up, cr := range c.cfg.Default.Credentials {
		if err := put(defaultCredentialOwner, up, cr.password); err != nil {
			return err
		}
	}
	return nil
}

// forRequest returns the credentials of org's requests to upstream up:
// its policy's (its own entry's, or the default policy's when it has
// none), which make what they fetch the org's alone, else the server's.
func (c *credentials) forRequest(ctx context.Context, org string, up *upstream) (creds, error) {
	owner, p := org, c.cfg.Orgs[org]
	if _, ok := c.cfg.Orgs[org]; !ok {
		owner, p = defaultCredentialOwner, c.cfg.Default
	}
	if cr, ok := p.Credentials[up.cfg.Name]; ok {
		pw, err := c.password(ctx, owner, up.cfg.Name)
		if err != nil {
			return creds{}, err
		}
		return creds{id: org, user: cr.Username, pass: string(pw)}, nil
	}
	if up.cfg.Username != "" {
		pw, err := c.password(ctx, serverCredentialOwner, up.cfg.Name)
		if err != nil {
			return creds{}, err
		}
		return creds{user: up.cfg.Username, pass: string(pw)}, nil
	}
	return creds{}, nil
}

func (c *credentials) password(ctx context.Context, owner, up string) ([]byte, error) {
	name := secretName(owner, up)
	c.mu.Lock()
	if pw, ok := c.inline[name]; ok {
		c.mu.Unlock()
		return pw, nil
	}
	if cp, ok := c.cache[name]; ok && time.Since(cp.loaded) < credentialTTL {
		c.mu.Unlock()
		return cp.pass, nil
	}
	c.mu.Unlock()
	if c.secrets == nil {
		return nil, fmt.Errorf("%w: no password for %s: set password_file", errUpstreamDenied, name)
	}
	b, err := c.secrets.Get(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no password stored for %s: set password_file once", errUpstreamDenied, name)
	}
	if err != nil {
		return nil, fmt.Errorf("open registry credential %s: %w", name, err)
	}
	var v struct {
		Password string `json:"password"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("registry credential %s: %w", name, err)
	}
	c.mu.Lock()
	c.cache[name] = cachedPassword{pass: []byte(v.Password), loaded: time.Now()}
	c.mu.Unlock()
	return []byte(v.Password), nil
}
