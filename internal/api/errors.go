package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/httperror"
	"github.com/nimbus-build/nimbus/internal/insights"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
	"github.com/nimbus-build/nimbus/internal/store"
)

// errorf is a failure whose status, code and message the handler decided.
func errorf(status int, code, format string, args ...any) error {
	return httperror.New(status, code, format, args...)
}

func badRequest(format string, args ...any) error {
	return errorf(http.StatusBadRequest, apiv1.CodeBadRequest, format, args...)
}

func notFound(what string) error {
	return errorf(http.StatusNotFound, apiv1.CodeNotFound, "%s not found", what)
}

// classify maps the services' sentinel errors to what the caller sees;
// anything else is an internal error, which httperror logs in full and
// shows without detail.
func classify(err error) (httperror.Error, bool) {
	status, code, msg := classifyAs(err)
	return httperror.Error{Status: status, Code: code, Message: msg}, status != http.StatusInternalServerError
}

func classifyAs(err error) (status int, code, msg string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, apiv1.CodeTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)
	case errors.Is(err, jobs.ErrInvalid), errors.Is(err, logs.ErrInvalid), errors.Is(err, insights.ErrInvalid):
		return http.StatusBadRequest, apiv1.CodeBadRequest, err.Error()
	case errors.Is(err, auth.ErrUnauthenticated):
		return http.StatusUnauthorized, apiv1.CodeUnauthenticated, err.Error()
	case errors.Is(err, store.ErrTokenUsed):
		return http.StatusUnauthorized, apiv1.CodeUnauthenticated, "join token unknown, already used or expired"
	case errors.Is(err, auth.ErrForbidden):
		return http.StatusForbidden, apiv1.CodeForbidden, err.Error()
	case errors.Is(err, store.ErrNotFound), errors.Is(err, sessionapi.ErrNotFound):
		return http.StatusNotFound, apiv1.CodeNotFound, "not found"
	case errors.Is(err, store.ErrStaleFence):
		return http.StatusConflict, apiv1.CodeStaleFence, "the lease is not (or no longer) yours: stale fence"
	case errors.Is(err, store.ErrFinished):
		return http.StatusConflict, apiv1.CodeFinished, "the job has already finished"
	case errors.Is(err, admin.ErrLastOwner):
		return http.StatusConflict, apiv1.CodeConflict, err.Error()
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, apiv1.CodeConflict, "already exists"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, apiv1.CodeUnavailable, "the server is busy; try again"
	}
	return http.StatusInternalServerError, apiv1.CodeInternal, "internal error"
}

// handler is an HTTP handler that returns its error; wrap turns it into
// the answer, keeping what the user sees apart from what is logged.
type handler = httperror.Handler

// wrap answers a handler's error in the API's shape
// ({"error": {"code", "message"}}, which apiclient reads).
func (s *Server) wrap(h handler) http.Handler {
	return httperror.Wrap(s.log, httperror.API, classify, h)
}
