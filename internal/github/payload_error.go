package github

import (
	"errors"
	"fmt"
)

// ErrInvalidPayload means a webhook payload is not valid JSON or lacks, or
// has a wrong value in, a field Nimbus needs. Errors that wrap it are
// *PayloadError values when a single field is at fault.
var ErrInvalidPayload = errors.New("invalid webhook payload")

// PayloadError names the field of a payload that is missing or wrong, and why.
// It wraps ErrInvalidPayload.
type PayloadError struct {
	// Field is the JSON path of the field, e.g. "workflow_job.run_id".
	Field string
	// Reason says what is wrong, e.g. "is missing".
	Reason string
}

func (e *PayloadError) Error() string {
	return fmt.Sprintf("%v: %s %s", ErrInvalidPayload, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidPayload) true.
func (e *PayloadError) Unwrap() error { return ErrInvalidPayload }

func fieldErr(field, format string, args ...any) error {
	return &PayloadError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
