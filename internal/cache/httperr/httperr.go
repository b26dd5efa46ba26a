// Package httperr classifies the cache's errors for internal/httperror,
// which answers every failed HTTP request of Nimbus in its protocol's
// shape: the Bazel HTTP cache, the Actions cache v1 API and its blob URLs
// answer {"error": "…"} (httperror.Message), the Actions cache v2 API
// {"code", "msg"} (httperror.Twirp, which @actions/cache parses).
package httperr

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// classes are the cache's sentinels, what an HTTP cache client sees of
// them, and their Twirp code and status.
var classes = []struct {
	sentinel    error
	status      int
	twirp       string
	twirpStatus int
}{
	{auth.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", http.StatusUnauthorized},
	{auth.ErrForbidden, http.StatusForbidden, "permission_denied", http.StatusForbidden},
	{blobstore.ErrNotFound, http.StatusNotFound, "not_found", http.StatusNotFound},
	{blobstore.ErrInvalid, http.StatusBadRequest, "invalid_argument", http.StatusBadRequest},
	{blobstore.ErrTooLarge, http.StatusRequestEntityTooLarge, "resource_exhausted", http.StatusTooManyRequests},
	{blobstore.ErrQuotaExceeded, http.StatusInsufficientStorage, "resource_exhausted", http.StatusTooManyRequests},
	{blobstore.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", http.StatusServiceUnavailable},
	{context.Canceled, http.StatusServiceUnavailable, "canceled", http.StatusServiceUnavailable},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "deadline_exceeded", http.StatusServiceUnavailable},
}

// Classify is the HTTP cache's and the Actions cache v1 API's
// classification; anything else is an internal error.
func Classify(err error) (httperror.Error, bool) {
	for _, c := range classes {
		if errors.Is(err, c.sentinel) {
			return httperror.Error{Status: c.status, Code: c.twirp, Message: err.Error()}, true
		}
	}
	return httperror.Error{}, false
}

// ClassifyTwirp is the Actions cache v2 (Twirp) API's.
func ClassifyTwirp(err error) (httperror.Error, bool) {
	for _, c := range classes {
		if errors.Is(err, c.sentinel) {
			return httperror.Error{Status: c.twirpStatus, Code: c.twirp, Message: err.Error()}, true
		}
	}
	return httperror.Error{}, false
}

// WriteJSON answers v as JSON with code (successful answers).
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
