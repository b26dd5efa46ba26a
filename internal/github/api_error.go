package github

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ErrNotFound matches (errors.Is) an *APIError with status 404: the
// resource does not exist or the installation cannot see it.
var ErrNotFound = errors.New("not found")

// APIError is an error response from GitHub's REST API.
type APIError struct {
	Method     string
	Path       string // the request's path, without query
	StatusCode int
	// Message is GitHub's "message", with the details of its "errors"
	// array appended when present.
	Message          string
	DocumentationURL string
	// RequestID is X-GitHub-Request-Id, for GitHub support.
	RequestID string
	// RetryAfter is how long GitHub asked to wait (Retry-After, or the
	// reset of an exhausted rate limit); 0 when it did not say.
	RetryAfter time.Duration
	// RateLimited is true for a primary or secondary rate limit response.
	RateLimited bool
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("github api %s %s: status %d: %s", e.Method, e.Path, e.StatusCode, msg)
}

// Is makes errors.Is(err, ErrNotFound) true for a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

// Retryable reports whether the same request may succeed later: a server
// error (5xx), 429, or a rate limit.
func (e *APIError) Retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests || e.RateLimited
}

// Retryable reports whether err, returned by an App method, is transient:
// a retryable *APIError or a network failure. The App has already retried
// such errors a few times; a caller may try again later (for example by
// leaving the job queued). Cancellation and bad input are not retryable.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne)
}
