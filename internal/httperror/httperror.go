// Package httperror answers failed HTTP requests, one way for every
// endpoint of Nimbus: a status, a JSON body in the shape the endpoint's
// protocol requires (Shape), and for an unexpected error a log line with
// its details and an answer without them. Handlers return errors; Wrap
// turns them into answers with the endpoint's own classification of its
// sentinel errors.
package httperror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// Shape is how a protocol spells an error in the body. Each is kept
// because a client depends on it.
type Shape int

const (
	// API: {"error": {"code": "…", "message": "…"}}. Nimbus's own API
	// (/api/v1, webhooks, operations): internal/apiclient and `nimbus ctl`
	// read the code and the message (apiv1.Error).
	API Shape = iota
	// Message: {"error": "…"}. The remote Bazel proxy's sessions API
	// (internal/rbs/sessionapi's client reads the message), the Bazel HTTP
	// cache and the Actions cache v1 REST API (whose clients show it).
	Message
	// Twirp: {"code": "…", "msg": "…"}. The Actions cache v2 API, a Twirp
	// service: @actions/cache parses Twirp errors (Code is a Twirp code).
	Twirp
	// OCI: {"errors": [{"code": "…", "message": "…", "detail": …}]}. The
	// container registry (internal/registry, /v2/): the OCI Distribution
	// spec's error body, which docker, containerd, skopeo and crane parse
	// (Code is a spec code such as MANIFEST_UNKNOWN; detail only when set).
	OCI
)

// Error is what the caller sees of a failure.
type Error struct {
	Status int
	// Code is a short machine-readable word (apiv1.Code… for the API, a
	// Twirp code for Twirp); Message shapes do not show it.
	Code    string
	Message string
	// Detail is structured detail; only the OCI shape shows it.
	Detail any
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error: a failure whose status, code and message the
// handler has decided.
func New(status int, code, format string, args ...any) error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Internal is what the caller sees of an unexpected error.
var Internal = Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}

// Write answers e in shape.
func Write(w http.ResponseWriter, shape Shape, e Error) {
	var body any
	switch shape {
	case Message:
		body = map[string]string{"error": e.Message}
	case Twirp:
		body = map[string]string{"code": e.Code, "msg": e.Message}
	case OCI:
		type ociError struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Detail  any    `json:"detail,omitempty"`
		}
		code := e.Code
		if code == Internal.Code {
			code = "UNKNOWN" // the spec's (and distribution's) word for it
		}
		body = map[string][]ociError{"errors": {{Code: code, Message: e.Message, Detail: e.Detail}}}
	default:
		body = map[string]map[string]string{"error": {"code": e.Code, "message": e.Message}}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Status)
	json.NewEncoder(w).Encode(body)
}

// Handler is an HTTP handler that returns its error.
type Handler func(w http.ResponseWriter, r *http.Request) error

// Classify maps an error a handler returned to what the caller sees; ok
// false: an unexpected error (Internal, logged).
type Classify func(err error) (e Error, ok bool)

// Wrap turns h into an http.Handler that answers h's error in shape:
// an *Error as it says, anything else as classify says, and what classify
// does not know (or a panic) as Internal with the details logged (at
// error level; other 5xx at warning level), never shown. An error after the answer has started (a stream) is logged
// only; a request whose client went away gets no answer.
func Wrap(log *slog.Logger, shape Shape, classify Classify, h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &StartWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.ErrorContext(r.Context(), "panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v)
				if !sw.Started() {
					Write(w, shape, Internal)
				}
			}
		}()
		err := h(sw, r)
		if err == nil {
			return
		}
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the client went away
		}
		e, ok := Error{}, false
		var he *Error
		if errors.As(err, &he) {
			e, ok = *he, true
		} else if classify != nil {
			e, ok = classify(err)
		}
		if !ok {
			e = Internal
		}
		switch {
		case e.Status == http.StatusInternalServerError:
			log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		case e.Status > 500: // unavailable for now: expected at times
			log.WarnContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", err)
		}
		if sw.Started() {
			return // a streaming answer already started
		}
		Write(w, shape, e)
	})
}

// StartWriter remembers whether an answer has started (Started), so that
// an error after it is not written over a streaming answer.
type StartWriter struct {
	http.ResponseWriter
	wrote bool
}

// Started reports whether a header or body was written.
func (w *StartWriter) Started() bool { return w.wrote }

func (w *StartWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *StartWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the ResponseWriter's own ReadFrom reachable through the
// wrapper: net/http's sends a file's bytes with sendfile, where io.Copy
// through Write alone would copy them through 32 KiB buffers.
func (w *StartWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wrote = true
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writeOnly{w.ResponseWriter}, r)
}

// writeOnly hides every method of a Writer but Write (so io.Copy does
// not come back to ReadFrom).
type writeOnly struct{ io.Writer }

func (w *StartWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *StartWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
