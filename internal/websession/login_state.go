package websession

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// LoginState is a sign-in in flight: what the callback needs to finish it
// and to check that it is the browser that started it. It travels in a
// sealed cookie (AES-GCM), so starting a sign-in stores nothing on the
// server.
type LoginState struct {
	Provider string `json:"p"`
	// State is the OAuth state, compared with the callback's.
	State string `json:"s"`
	// Nonce is the OIDC nonce the ID token must carry.
	Nonce string `json:"n"`
	// Verifier is the PKCE code verifier.
	Verifier string `json:"v"`
	// Return is the dashboard path to go to afterwards.
	Return string `json:"r"`
	// StepUp names the session re-authenticating (empty: a sign-in).
	StepUp string `json:"u,omitempty"`
	// Started is when the flow began: a step-up's authentication must be
	// no older.
	Started time.Time `json:"t"`
}

// loginStateTTL bounds how long a sign-in may take at the provider.
const loginStateTTL = 10 * time.Minute

// ErrLoginState: the callback came without a valid sign-in cookie
// (expired, tampered with, from another browser or already used).
var ErrLoginState = errors.New("no sign-in in progress in this browser (it expired or was started elsewhere): sign in again")

func (m *Manager) loginCookieName() string {
	if m.cfg.Secure {
		return "__Host-nimbus_signin"
	}
	return "nimbus_signin"
}

// NewLoginState returns a state for provider with fresh random state,
// nonce and PKCE verifier.
func (m *Manager) NewLoginState(provider, returnTo, stepUpSession string) LoginState {
	return LoginState{Provider: provider, State: random(), Nonce: random(), Verifier: random() + random(),
		Return: returnTo, StepUp: stepUpSession, Started: m.now()}
}

func random() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Challenge is the PKCE S256 challenge of the state's verifier.
func (l LoginState) Challenge() string {
	h := sha256.Sum256([]byte(l.Verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// SetLoginState seals l into the sign-in cookie.
func (m *Manager) SetLoginState(w http.ResponseWriter, l LoginState) {
	plain, _ := json.Marshal(l)
	block, _ := aes.NewCipher(m.sealKey)
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, plain, []byte(m.loginCookieName()))
	http.SetCookie(w, &http.Cookie{
		Name: m.loginCookieName(), Value: base64.RawURLEncoding.EncodeToString(sealed), Path: "/",
		HttpOnly: true, Secure: m.cfg.Secure, SameSite: http.SameSiteLaxMode, MaxAge: int(loginStateTTL / time.Second),
	})
}

// TakeLoginState opens the request's sign-in cookie and clears it (a
// state is used once). It checks that the callback's state is the one
// the cookie holds and that the flow is recent.
func (m *Manager) TakeLoginState(w http.ResponseWriter, r *http.Request, state string) (LoginState, error) {
	c, err := r.Cookie(m.loginCookieName())
	if err != nil || len(c.Value) > 4096 {
		return LoginState{}, ErrLoginState
	}
	http.SetCookie(w, &http.Cookie{Name: m.loginCookieName(), Value: "", Path: "/", HttpOnly: true, Secure: m.cfg.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
	sealed, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil {
		return LoginState{}, ErrLoginState
	}
	block, _ := aes.NewCipher(m.sealKey)
	aead, _ := cipher.NewGCM(block)
	if len(sealed) < aead.NonceSize() {
		return LoginState{}, ErrLoginState
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(m.loginCookieName()))
	if err != nil {
		return LoginState{}, ErrLoginState
	}
	var l LoginState
	if err := json.Unmarshal(plain, &l); err != nil {
		return LoginState{}, ErrLoginState
	}
	if state == "" || len(state) != len(l.State) || subtle.ConstantTimeCompare([]byte(state), []byte(l.State)) != 1 || m.now().Sub(l.Started) > loginStateTTL {
		return LoginState{}, ErrLoginState
	}
	return l, nil
}
