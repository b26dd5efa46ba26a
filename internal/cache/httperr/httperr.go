// Package httperr turns the cache's errors into HTTP responses: a status
// code from the error's sentinel and a JSON body {"error": "..."}; an
// unexpected error is logged and answered 500 without its details.
package httperr

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Status returns the HTTP status for err.
func Status(err error) int {
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, auth.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, blobstore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, blobstore.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, blobstore.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, blobstore.ErrQuotaExceeded):
		return http.StatusInsufficientStorage
	case errors.Is(err, blobstore.ErrUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Write answers err. realm names the WWW-Authenticate realm on a 401.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := Status(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		log.ErrorContext(r.Context(), "cache request", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nimbus-cache", Basic realm="nimbus-cache"`)
	}
	WriteJSON(w, code, map[string]string{"error": msg})
}

// WriteJSON answers v as JSON with code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// Handler is an http.Handler that returns its error; Wrap answers it.
type Handler func(w http.ResponseWriter, r *http.Request) error

// Wrap turns h into an http.Handler.
func Wrap(log *slog.Logger, h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			Write(w, r, log, err)
		}
	})
}
