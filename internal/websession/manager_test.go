package websession_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
	"github.com/nimbus-build/nimbus/internal/websession"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newManager(t *testing.T, secure bool) (*websession.Manager, *clock) {
	t.Helper()
	return newManagerKey(t, secure, 7)
}

func newManagerKey(t *testing.T, secure bool, key byte) (*websession.Manager, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	cfg := websession.DefaultConfig()
	cfg.Secure = secure
	m, err := websession.New(storetest.Open(t, "sqlite").WebSessions(), cfg, bytes.Repeat([]byte{key}, 32), c.now)
	if err != nil {
		t.Fatal(err)
	}
	return m, c
}

var who = websession.Identity{Provider: "corp", Subject: "alice-sub", Email: "alice@example.com", Name: "Alice"}

// start signs in and returns a request carrying the session cookie.
func start(t *testing.T, m *websession.Manager) (websession.Session, *http.Cookie) {
	t.Helper()
	rec := httptest.NewRecorder()
	s, err := m.Start(context.Background(), rec, who, []websession.OrgRole{{Org: "org_a", Role: auth.RoleAdmin}}, "org_a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies: %v", cs)
	}
	return s, cs[0]
}

func requestWith(c *http.Cookie) *http.Request {
	r := httptest.NewRequest("GET", "/ui/jobs", nil)
	r.AddCookie(c)
	return r
}

func TestCookieHoldsOnlyARandomSecret(t *testing.T) {
	for _, secure := range []bool{false, true} {
		m, _ := newManager(t, secure)
		s, c := start(t, m)
		if !c.HttpOnly || c.Secure != secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
			t.Errorf("secure=%v: cookie flags %+v", secure, c)
		}
		if secure != strings.HasPrefix(c.Name, "__Host-") {
			t.Errorf("secure=%v: cookie name %s", secure, c.Name)
		}
		for _, leak := range []string{s.ID, s.UserID, who.Email, who.Subject} {
			if strings.Contains(c.Value, leak) {
				t.Errorf("cookie value contains %q", leak)
			}
		}
		if bytes.Contains(s.Hash, []byte(c.Value)) || len(c.Value) < 40 {
			t.Errorf("cookie value %q is not a random secret apart from its hash", c.Value)
		}
		got, err := m.Load(context.Background(), requestWith(c))
		if err != nil || got.ID != s.ID || got.Role("org_a") != auth.RoleAdmin || got.Role("org_b") != "" {
			t.Fatalf("load: %+v, %v", got, err)
		}
	}
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	t.Run("idle", func(t *testing.T) {
		m, c := newManager(t, false)
		_, ck := start(t, m)
		// Used every 50 minutes: stays alive past the idle timeout.
		for range 3 {
			c.add(50 * time.Minute)
			if _, err := m.Load(ctx, requestWith(ck)); err != nil {
				t.Fatalf("used within the idle timeout: %v", err)
			}
		}
		c.add(time.Hour)
		if _, err := m.Load(ctx, requestWith(ck)); !errors.Is(err, websession.ErrExpired) {
			t.Errorf("idle for an hour: %v, want ErrExpired", err)
		}
	})
	t.Run("absolute", func(t *testing.T) {
		m, c := newManager(t, false)
		_, ck := start(t, m)
		for range 24 {
			c.add(30 * time.Minute)
			_, err := m.Load(ctx, requestWith(ck))
			if c.now().Sub(time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)) >= 12*time.Hour {
				if !errors.Is(err, websession.ErrExpired) {
					t.Fatalf("past the absolute lifetime: %v, want ErrExpired", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("within the lifetime: %v", err)
			}
		}
		t.Fatal("never expired")
	})
	t.Run("revoked", func(t *testing.T) {
		m, _ := newManager(t, false)
		s, ck := start(t, m)
		rec := httptest.NewRecorder()
		if err := m.End(ctx, rec, s); err != nil {
			t.Fatal(err)
		}
		if cs := rec.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
			t.Errorf("sign-out does not clear the cookie: %v", cs)
		}
		// The old cookie, replayed after sign-out, is refused.
		if _, err := m.Load(ctx, requestWith(ck)); !errors.Is(err, websession.ErrExpired) {
			t.Errorf("cookie replayed after sign-out: %v, want ErrExpired", err)
		}
	})
	t.Run("forged", func(t *testing.T) {
		m, _ := newManager(t, false)
		_, ck := start(t, m)
		for _, v := range []string{"", "x", ck.Value + "x", strings.Repeat("a", 500)} {
			if _, err := m.Load(ctx, requestWith(&http.Cookie{Name: ck.Name, Value: v})); !errors.Is(err, websession.ErrNoSession) {
				t.Errorf("cookie %q: %v, want ErrNoSession", v, err)
			}
		}
	})
}

func TestCSRFAndStepUp(t *testing.T) {
	m, c := newManager(t, false)
	s, _ := start(t, m)
	other, _ := start(t, m)
	tok := m.CSRFToken(s)
	if !m.ValidCSRF(s, tok) || m.ValidCSRF(other, tok) || m.ValidCSRF(s, "") || m.ValidCSRF(s, tok[1:]) {
		t.Error("a session's CSRF token must be valid for it alone")
	}
	if !m.Fresh(s) {
		t.Error("a session just signed in is fresh")
	}
	c.add(6 * time.Minute)
	if m.Fresh(s) {
		t.Error("6 minutes after sign-in: still fresh")
	}
	if err := m.SteppedUp(context.Background(), s, c.now()); err != nil {
		t.Fatal(err)
	}
}

func TestLoginState(t *testing.T) {
	m, c := newManager(t, false)
	other, _ := newManagerKey(t, false, 8)
	l := m.NewLoginState("corp", "/ui/jobs", "")
	rec := httptest.NewRecorder()
	m.SetLoginState(rec, l)
	ck := rec.Result().Cookies()[0]
	if !ck.HttpOnly || ck.MaxAge <= 0 || strings.Contains(ck.Value, l.Nonce) || strings.Contains(ck.Value, l.Verifier) {
		t.Fatalf("sign-in cookie %+v", ck)
	}
	callback := func(state string, cookies ...*http.Cookie) (websession.LoginState, error) {
		r := httptest.NewRequest("GET", "/auth/callback?state="+state, nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		return m.TakeLoginState(httptest.NewRecorder(), r, state)
	}
	if _, err := callback(l.State); !errors.Is(err, websession.ErrLoginState) {
		t.Errorf("callback without the cookie (another browser): %v", err)
	}
	if _, err := callback("wrong", ck); !errors.Is(err, websession.ErrLoginState) {
		t.Errorf("callback with another state: %v", err)
	}
	tampered := *ck
	tampered.Value = ck.Value[:len(ck.Value)-2] + "AA"
	if _, err := callback(l.State, &tampered); !errors.Is(err, websession.ErrLoginState) {
		t.Errorf("tampered cookie: %v", err)
	}
	// A cookie sealed by another installation's key.
	rec2 := httptest.NewRecorder()
	other.SetLoginState(rec2, l)
	if _, err := callback(l.State, rec2.Result().Cookies()[0]); !errors.Is(err, websession.ErrLoginState) {
		t.Errorf("cookie of another key: %v", err)
	}
	got, err := callback(l.State, ck)
	if err != nil || got.Nonce != l.Nonce || got.Verifier != l.Verifier || got.Return != "/ui/jobs" {
		t.Fatalf("callback: %+v, %v", got, err)
	}
	c.add(11 * time.Minute)
	if _, err := callback(l.State, ck); !errors.Is(err, websession.ErrLoginState) {
		t.Errorf("a sign-in 11 minutes old: %v", err)
	}
}
