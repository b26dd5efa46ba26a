package httperror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var errKnown = errors.New("known")

func classifyKnown(err error) (Error, bool) {
	if errors.Is(err, errKnown) {
		return Error{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}, true
	}
	return Error{}, false
}

func serve(t *testing.T, shape Shape, h Handler) (*httptest.ResponseRecorder, string) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rec := httptest.NewRecorder()
	Wrap(log, shape, classifyKnown, h).ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	return rec, logs.String()
}

func body(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return m
}

// Each shape is what its clients parse.
func TestShapes(t *testing.T) {
	e := Error{Status: http.StatusNotFound, Code: "not_found", Message: "job x not found"}
	for shape, want := range map[Shape]map[string]any{
		API:     {"error": map[string]any{"code": "not_found", "message": "job x not found"}},
		Message: {"error": "job x not found"},
		Twirp:   {"code": "not_found", "msg": "job x not found"},
		OCI:     {"errors": []any{map[string]any{"code": "not_found", "message": "job x not found"}}},
	} {
		rec := httptest.NewRecorder()
		Write(rec, shape, e)
		if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != "application/json" ||
			rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("shape %d: %d %v", shape, rec.Code, rec.Header())
		}
		if d := cmp.Diff(want, body(t, rec)); d != "" {
			t.Errorf("shape %d (-want +got):\n%s", shape, d)
		}
	}
}

// What the caller sees: the handler's decision, the classification, or
// "internal error" with the details only in the log.
func TestWrap(t *testing.T) {
	rec, _ := serve(t, API, func(w http.ResponseWriter, r *http.Request) error {
		return New(http.StatusBadRequest, "bad_request", "argv: %s", "empty")
	})
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"argv: empty"`) {
		t.Errorf("decided: %d %s", rec.Code, rec.Body)
	}
	rec, _ = serve(t, Message, func(w http.ResponseWriter, r *http.Request) error {
		return errors.Join(errKnown, errors.New("more"))
	})
	if rec.Code != http.StatusConflict {
		t.Errorf("classified: %d %s", rec.Code, rec.Body)
	}
	rec, logs := serve(t, API, func(w http.ResponseWriter, r *http.Request) error {
		return errors.New("dial db 10.0.0.7: secret detail")
	})
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") || !strings.Contains(logs, "secret detail") {
		t.Errorf("unexpected error: %d %s; log %q", rec.Code, rec.Body, logs)
	}
	rec, logs = serve(t, Twirp, func(w http.ResponseWriter, r *http.Request) error { panic("boom") })
	if rec.Code != 500 || body(t, rec)["code"] != "internal" || !strings.Contains(logs, "boom") {
		t.Errorf("panic: %d %s; log %q", rec.Code, rec.Body, logs)
	}
	// A stream that already started is not answered twice.
	rec, logs = serve(t, API, func(w http.ResponseWriter, r *http.Request) error {
		w.Write([]byte("partial"))
		return errors.New("broken stream")
	})
	if rec.Body.String() != "partial" || !strings.Contains(logs, "broken stream") {
		t.Errorf("stream: %q; log %q", rec.Body, logs)
	}
}

// A client that went away gets nothing, and nothing is logged.
func TestWrapClientGone(t *testing.T) {
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h := Wrap(slog.New(slog.NewTextHandler(&logs, nil)), API, nil, func(w http.ResponseWriter, r *http.Request) error {
		return r.Context().Err()
	})
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil).WithContext(ctx))
	if rec.Body.Len() != 0 || logs.Len() != 0 {
		t.Errorf("answered %q, logged %q", rec.Body, logs.String())
	}
}

// readFromRecorder is a ResponseWriter with its own ReadFrom, as
// net/http's (which uses sendfile for a file).
type readFromRecorder struct {
	*httptest.ResponseRecorder
	readFrom int64
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	n, err := io.Copy(r.ResponseRecorder, src)
	r.readFrom += n
	return n, err
}

// A handler's io.Copy of a body reaches the server's ReadFrom through
// the wrapper, and the answer counts as started.
func TestWrapKeepsReadFrom(t *testing.T) {
	rec := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	body := strings.Repeat("x", 100_000)
	var started bool
	h := Wrap(slog.New(slog.DiscardHandler), API, classifyKnown, func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.Copy(w, struct{ io.Reader }{strings.NewReader(body)}); err != nil {
			return err
		}
		started = w.(*StartWriter).Started()
		return errKnown // after the body: logged, not written over it
	})
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	if rec.readFrom != int64(len(body)) || rec.Body.String() != body || !started {
		t.Fatalf("ReadFrom copied %d of %d bytes, body %d bytes, started %v", rec.readFrom, len(body), rec.Body.Len(), started)
	}
}
