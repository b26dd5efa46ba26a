package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

const maxBody = 1 << 20

// decode reads one JSON document into v, strictly: unknown fields, trailing
// data, a wrong content type and bodies over limit are the caller's errors.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errorf(http.StatusUnsupportedMediaType, apiv1.CodeUnsupported, "Content-Type must be application/json")
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, errSlowBody) {
			return err
		}
		if errors.Is(err, io.EOF) {
			return badRequest("request body: empty, a JSON object is required")
		}
		return badRequest("request body: %s", jsonMessage(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if errors.Is(err, errSlowBody) {
			return err
		}
		return badRequest("request body: unexpected data after the JSON object")
	}
	return nil
}

// readBody reads a whole request body of at most limit bytes into one
// buffer (of the declared length when there is one: no regrowth), writing
// it to also as it arrives.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, also io.Writer) ([]byte, error) {
	var buf *bytes.Buffer
	if n := r.ContentLength; n >= 0 && n <= limit {
		buf = bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
	} else {
		buf = new(bytes.Buffer)
	}
	_, err := buf.ReadFrom(io.TeeReader(http.MaxBytesReader(w, r.Body, limit), also))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, errSlowBody) {
			return nil, err
		}
		return nil, badRequest("read body: %v", err)
	}
	return buf.Bytes(), nil
}

func jsonMessage(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: expected %s", te.Field, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "malformed JSON"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
