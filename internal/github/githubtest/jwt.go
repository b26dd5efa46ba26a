package githubtest

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"
)

// JWT rules GitHub applies to App JWTs.
const (
	maxJWTLifetime = 10 * time.Minute
	jwtClockSkew   = 60 * time.Second
)

// verifyAppJWT checks an App JWT and returns the App it authenticates. The
// error text is what the emulator answers, close to GitHub's.
func (s *Server) verifyAppJWT(token string, now time.Time) (App, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return App{}, errors.New("A JSON web token could not be decoded")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return App{}, errors.New("A JSON web token could not be decoded")
	}
	if header.Alg != "RS256" {
		return App{}, errors.New("A JSON web token could not be decoded: alg must be RS256")
	}
	var claims struct {
		IAT json.RawMessage `json:"iat"`
		EXP json.RawMessage `json:"exp"`
		ISS json.RawMessage `json:"iss"`
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return App{}, errors.New("A JSON web token could not be decoded")
	}
	app, ok := s.appByIssuer(claims.ISS)
	if !ok {
		return App{}, errors.New("'Issuer' claim ('iss') must be an Integer or a client id of a registered App")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return App{}, errors.New("A JSON web token could not be decoded")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(app.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return App{}, errors.New("A JSON web token could not be decoded: signature does not verify")
	}
	iat, ok1 := integerClaim(claims.IAT)
	if !ok1 {
		return App{}, errors.New("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")
	}
	exp, ok2 := integerClaim(claims.EXP)
	if !ok2 {
		return App{}, errors.New("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	}
	issued, expires := time.Unix(iat, 0), time.Unix(exp, 0)
	switch {
	case issued.After(now.Add(jwtClockSkew)):
		return App{}, errors.New("'Issued at' claim ('iat') must be an Integer representing a time in the past")
	case !expires.After(now):
		return App{}, errors.New("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	case !expires.After(issued):
		return App{}, errors.New("'Expiration time' claim ('exp') must be after 'Issued at' claim ('iat')")
	case expires.Sub(issued) > maxJWTLifetime || expires.After(now.Add(maxJWTLifetime+jwtClockSkew)):
		return App{}, errors.New("'Expiration time' claim ('exp') is too far in the future")
	}
	return app, nil
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// integerClaim reads a NumericDate claim that must be a JSON integer.
func integerClaim(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || raw[0] == '"' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// appByIssuer finds the App named by iss: its numeric id (as a JSON number
// or string) or its client id.
func (s *Server) appByIssuer(iss json.RawMessage) (App, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	iss = bytes.TrimSpace(iss)
	if len(iss) == 0 {
		return App{}, false
	}
	if iss[0] != '"' {
		id, err := strconv.ParseInt(string(iss), 10, 64)
		if err != nil {
			return App{}, false
		}
		app, ok := s.apps[id]
		return app, ok
	}
	var str string
	if json.Unmarshal(iss, &str) != nil || str == "" {
		return App{}, false
	}
	if id, err := strconv.ParseInt(str, 10, 64); err == nil {
		app, ok := s.apps[id]
		return app, ok
	}
	for _, app := range s.apps {
		if app.ClientID != "" && app.ClientID == str {
			return app, true
		}
	}
	return App{}, false
}
