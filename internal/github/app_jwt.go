package github

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"
)

// App JWT lifetime. GitHub refuses an exp more than 10 minutes ahead; iat is
// backdated to absorb clock drift between us and GitHub.
const (
	jwtBackdate = 60 * time.Second
	jwtLifetime = 9 * time.Minute
)

// jwtHeader is the encoded {"alg":"RS256","typ":"JWT"}.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))

// appJWT returns a JWT that authenticates as the App itself, signed RS256:
// iat = now-60s, exp = now+9m, iss = the client id or the app id.
func (a *App) appJWT() (string, error) {
	now := a.now()
	claims := struct {
		IAT int64 `json:"iat"`
		EXP int64 `json:"exp"`
		ISS any   `json:"iss"`
	}{
		IAT: now.Add(-jwtBackdate).Unix(),
		EXP: now.Add(jwtLifetime).Unix(),
		ISS: a.issuer,
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode jwt claims: %w", err)
	}
	signingInput := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, a.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign jwt: %w", err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
