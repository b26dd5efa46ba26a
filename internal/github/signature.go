package github

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// SignatureHeader is the header that carries a delivery's HMAC.
const SignatureHeader = "X-Hub-Signature-256"

const signaturePrefix = "sha256="

var (
	// ErrMissingSignature means the delivery carried no X-Hub-Signature-256.
	ErrMissingSignature = errors.New("missing " + SignatureHeader + " header")
	// ErrMalformedSignature means the header is not "sha256=" followed by 64
	// hexadecimal digits.
	ErrMalformedSignature = errors.New("malformed " + SignatureHeader + " header")
	// ErrBadSignature means the signature is well formed but matches none of
	// the configured secrets.
	ErrBadSignature = errors.New("webhook signature does not match")
	// ErrNoSecret means VerifySignature was called without a usable secret:
	// a configuration error, never the sender's fault.
	ErrNoSecret = errors.New("no webhook secret configured")
)

// VerifySignature checks header, the value of X-Hub-Signature-256, against
// body, the raw request body exactly as received. The header must be
// "sha256=" followed by the hex HMAC-SHA256 of body keyed with one of secrets;
// several secrets are accepted so that a secret can be rotated without losing
// deliveries. Comparisons are constant time, and every secret is tried so the
// time taken does not tell which one matched.
//
// It returns nil, or an error that is ErrNoSecret, ErrMissingSignature,
// ErrMalformedSignature or ErrBadSignature.
func VerifySignature(body []byte, header string, secrets [][]byte) error {
	if len(secrets) == 0 {
		return ErrNoSecret
	}
	for _, s := range secrets {
		if len(s) == 0 {
			// An empty key is a key everyone knows.
			return ErrNoSecret
		}
	}
	if header == "" {
		return ErrMissingSignature
	}
	var got [sha256.Size]byte
	if len(header) != len(signaturePrefix)+hex.EncodedLen(sha256.Size) ||
		header[:len(signaturePrefix)] != signaturePrefix {
		return ErrMalformedSignature
	}
	if _, err := hex.Decode(got[:], []byte(header[len(signaturePrefix):])); err != nil {
		return ErrMalformedSignature
	}
	ok := false
	for _, s := range secrets {
		m := hmac.New(sha256.New, s)
		m.Write(body)
		if hmac.Equal(m.Sum(nil), got[:]) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}
