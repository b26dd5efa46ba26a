package github

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
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
	v, err := NewSignatureVerifier(header, secrets)
	if err != nil {
		return err
	}
	v.Write(body)
	return v.Verify()
}

// SignatureVerifier checks a delivery's signature as its body streams in
// (an io.Writer of the body), so that the check needs no second pass over
// the body and a delivery without a well-formed signature is refused
// before any of its body is read.
type SignatureVerifier struct {
	want [sha256.Size]byte
	macs []hash.Hash
}

// NewSignatureVerifier checks the secrets and the header's form (the
// errors of VerifySignature but ErrBadSignature) and returns a verifier
// to write the body to.
func NewSignatureVerifier(header string, secrets [][]byte) (*SignatureVerifier, error) {
	if len(secrets) == 0 {
		return nil, ErrNoSecret
	}
	for _, s := range secrets {
		if len(s) == 0 {
			// An empty key is a key everyone knows.
			return nil, ErrNoSecret
		}
	}
	if header == "" {
		return nil, ErrMissingSignature
	}
	v := &SignatureVerifier{}
	if len(header) != len(signaturePrefix)+hex.EncodedLen(sha256.Size) ||
		header[:len(signaturePrefix)] != signaturePrefix {
		return nil, ErrMalformedSignature
	}
	if _, err := hex.Decode(v.want[:], []byte(header[len(signaturePrefix):])); err != nil {
		return nil, ErrMalformedSignature
	}
	for _, s := range secrets {
		v.macs = append(v.macs, hmac.New(sha256.New, s))
	}
	return v, nil
}

// Write adds body bytes; it never fails.
func (v *SignatureVerifier) Write(p []byte) (int, error) {
	for _, m := range v.macs {
		m.Write(p)
	}
	return len(p), nil
}

// Verify says whether the body written matches the signature: nil or
// ErrBadSignature.
func (v *SignatureVerifier) Verify() error {
	ok := false
	for _, m := range v.macs {
		if hmac.Equal(m.Sum(nil), v.want[:]) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}
