package auth

import "errors"

var (
	// ErrUnauthenticated means no valid credential was presented: missing,
	// malformed, unknown, expired or revoked. Callers answer 401.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means the credential is valid but does not allow the
	// action on the resource. Callers answer 403 (or 404 where existence
	// must not leak).
	ErrForbidden = errors.New("forbidden")
)
