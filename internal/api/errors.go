package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/rbs/session"
	"github.com/nimbus-build/nimbus/internal/store"
)

// httpError is an error with what the caller should see.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error {
	return errorf(http.StatusBadRequest, apiv1.CodeBadRequest, format, args...)
}

func notFound(what string) error {
	return errorf(http.StatusNotFound, apiv1.CodeNotFound, "%s not found", what)
}

// classify maps an error to what the caller sees. Anything unknown is an
// internal error, logged in full and shown without detail.
func classify(err error) (status int, code, msg string) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status, he.code, he.msg
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, apiv1.CodeTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, jobs.ErrInvalid):
		return http.StatusBadRequest, apiv1.CodeBadRequest, err.Error()
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized, apiv1.CodeUnauthenticated, err.Error()
	case errors.Is(err, store.ErrTokenUsed):
		return http.StatusUnauthorized, apiv1.CodeUnauthenticated, "join token unknown, already used or expired"
	case errors.Is(err, auth.ErrForbidden):
		return http.StatusForbidden, apiv1.CodeForbidden, err.Error()
	case errors.Is(err, store.ErrNotFound), errors.Is(err, session.ErrNotFound):
		return http.StatusNotFound, apiv1.CodeNotFound, "not found"
	case errors.Is(err, store.ErrStaleFence):
		return http.StatusConflict, apiv1.CodeStaleFence, "the lease is not (or no longer) yours: stale fence"
	case errors.Is(err, store.ErrFinished):
		return http.StatusConflict, apiv1.CodeFinished, "the job has already finished"
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, apiv1.CodeConflict, "already exists"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, apiv1.CodeUnavailable, "the server is busy; try again"
	}
	return http.StatusInternalServerError, apiv1.CodeInternal, "internal error"
}

// handler is an HTTP handler that returns its error; wrap turns it into
// the answer, keeping what the user sees apart from what is logged.
type handler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) wrap(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeJSON(w, http.StatusInternalServerError, apiv1.Error{Error: apiv1.ErrorBody{Code: apiv1.CodeInternal, Message: "internal error"}})
			}
		}()
		sw := &statusWriter{ResponseWriter: w}
		err := h(sw, r)
		if err == nil {
			return
		}
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client went away
		}
		status, code, msg := classify(err)
		if status >= 500 {
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		if sw.wrote {
			return // a streaming answer already started
		}
		writeJSON(w, status, apiv1.Error{Error: apiv1.ErrorBody{Code: code, Message: msg}})
	})
}
