package github

import (
	"context"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// tokenRefreshMargin is how long before its expiry a cached installation
// token is replaced, so that no request goes out with a token about to lapse.
const tokenRefreshMargin = 5 * time.Minute

// fetchTimeout bounds one shared token fetch. The fetch is detached from the
// caller that started it, so that one caller giving up does not fail the
// others waiting on it.
const fetchTimeout = time.Minute

// installationToken is an installation access token and when it expires.
type installationToken struct {
	value     string
	expiresAt time.Time
}

// tokenCache keeps one installation token per installation and fetches a
// new one when it is missing or near expiry; concurrent callers for the same
// installation share one fetch.
type tokenCache struct {
	now   func() time.Time
	fetch func(ctx context.Context, installationID int64) (installationToken, error)

	group singleflight.Group
	mu    sync.Mutex
	m     map[int64]installationToken
}

func newTokenCache(now func() time.Time, fetch func(context.Context, int64) (installationToken, error)) *tokenCache {
	return &tokenCache{now: now, fetch: fetch, m: make(map[int64]installationToken)}
}

// get returns a usable token for id and whether it came from the cache.
func (c *tokenCache) get(ctx context.Context, id int64) (string, bool, error) {
	if tok, ok := c.lookup(id); ok {
		return tok, true, nil
	}
	ch := c.group.DoChan(strconv.FormatInt(id, 10), func() (any, error) {
		// A fetch that finished just before this one started may have
		// filled the cache.
		if tok, ok := c.lookup(id); ok {
			return tok, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		t, err := c.fetch(fctx, id)
		if err != nil {
			return nil, err
		}
		c.store(id, t)
		return t.value, nil
	})
	select {
	case <-ctx.Done():
		return "", false, context.Cause(ctx)
	case r := <-ch:
		if r.Err != nil {
			return "", false, r.Err
		}
		return r.Val.(string), false, nil
	}
}

func (c *tokenCache) lookup(id int64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.m[id]
	if !ok {
		return "", false
	}
	if !c.fresh(t) {
		delete(c.m, id)
		return "", false
	}
	return t.value, true
}

func (c *tokenCache) fresh(t installationToken) bool {
	return c.now().Before(t.expiresAt.Add(-tokenRefreshMargin))
}

// store caches t unless it is already within the refresh margin (a token
// that short-lived is used once). Stale entries of other installations are
// swept now and then so the map does not grow without bound.
func (c *tokenCache) store(id int64, t installationToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.fresh(t) {
		delete(c.m, id)
		return
	}
	c.m[id] = t
	if len(c.m)%256 == 0 {
		for k, v := range c.m {
			if !c.fresh(v) {
				delete(c.m, k)
			}
		}
	}
}

// drop forgets id's token if it is still tok (GitHub refused it).
func (c *tokenCache) drop(id int64, tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.m[id]; ok && t.value == tok {
		delete(c.m, id)
	}
}
