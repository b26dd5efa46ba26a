package blobstore

import "errors"

var (
	// ErrNotFound means the blob does not exist for the caller's org.
	ErrNotFound = errors.New("blob not found")
	// ErrInvalid means the client sent something wrong: a malformed digest,
	// content whose hash or size does not match, a bad offset.
	ErrInvalid = errors.New("invalid request")
	// ErrQuotaExceeded means the org's hard quota would be exceeded even
	// after evicting what may be evicted inside the org.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrTooLarge means the blob is larger than the store accepts.
	ErrTooLarge = errors.New("blob too large")
	// ErrUnavailable means a backend cannot be reached now (for example, its
	// circuit breaker is open). Clients may retry later.
	ErrUnavailable = errors.New("storage unavailable")
)
