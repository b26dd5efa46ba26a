package github

import (
	"errors"
	"fmt"
	"net/http"
)

// Header names GitHub sets on every webhook delivery.
const (
	HeaderEvent      = "X-GitHub-Event"
	HeaderDelivery   = "X-GitHub-Delivery"
	HeaderHookID     = "X-GitHub-Hook-ID"
	HeaderTargetType = "X-GitHub-Hook-Installation-Target-Type"
	HeaderTargetID   = "X-GitHub-Hook-Installation-Target-ID"
)

// ErrInvalidDelivery means a delivery's X-GitHub-* headers are missing or
// invalid. The error names the header.
var ErrInvalidDelivery = errors.New("invalid webhook delivery headers")

// Length bounds on delivery headers. GitHub's values are far shorter (a GUID,
// an event name, decimal ids); the bounds keep junk out of logs and stores.
const (
	maxDeliveryIDLen = 64
	maxEventLen      = 64
	maxTargetTypeLen = 64
	maxDecimalIDLen  = 20 // as long as the largest uint64
)

// Delivery is what GitHub says about a webhook delivery in its headers.
type Delivery struct {
	// ID is X-GitHub-Delivery, a GUID. It is the same when a delivery is
	// redelivered, so it is the de-duplication key. Always set.
	ID string
	// Event is X-GitHub-Event, e.g. "workflow_job" or "ping". Always set.
	Event string
	// HookID is X-GitHub-Hook-ID (decimal), or "" when absent.
	HookID string
	// TargetType is X-GitHub-Hook-Installation-Target-Type ("integration"
	// for a GitHub App's webhook, "repository", "organization"), or "".
	TargetType string
	// TargetID is X-GitHub-Hook-Installation-Target-ID (decimal), or "".
	TargetID string
}

// DeliveryFromHeaders reads and validates a delivery's headers. ID and Event
// are required; the others are checked when present. A header given more than
// once is refused, since its meaning would be ambiguous. Errors wrap
// ErrInvalidDelivery and name the header.
func DeliveryFromHeaders(h http.Header) (Delivery, error) {
	var d Delivery
	var err error
	if d.ID, err = headerValue(h, HeaderDelivery, true, maxDeliveryIDLen, isGUIDByte); err != nil {
		return Delivery{}, err
	}
	if d.Event, err = headerValue(h, HeaderEvent, true, maxEventLen, isNameByte); err != nil {
		return Delivery{}, err
	}
	if d.HookID, err = headerValue(h, HeaderHookID, false, maxDecimalIDLen, isDigit); err != nil {
		return Delivery{}, err
	}
	if d.TargetType, err = headerValue(h, HeaderTargetType, false, maxTargetTypeLen, isNameByte); err != nil {
		return Delivery{}, err
	}
	if d.TargetID, err = headerValue(h, HeaderTargetID, false, maxDecimalIDLen, isDigit); err != nil {
		return Delivery{}, err
	}
	return d, nil
}

func headerValue(h http.Header, name string, required bool, maxLen int, valid func(byte) bool) (string, error) {
	vs := h.Values(name)
	switch {
	case len(vs) == 0 || (len(vs) == 1 && vs[0] == ""):
		if required {
			return "", fmt.Errorf("%w: %s is missing", ErrInvalidDelivery, name)
		}
		return "", nil
	case len(vs) > 1:
		return "", fmt.Errorf("%w: %s is given %d times", ErrInvalidDelivery, name, len(vs))
	}
	v := vs[0]
	if len(v) > maxLen {
		return "", fmt.Errorf("%w: %s is %d bytes long, at most %d allowed", ErrInvalidDelivery, name, len(v), maxLen)
	}
	for i := 0; i < len(v); i++ {
		if !valid(v[i]) {
			return "", fmt.Errorf("%w: %s has an invalid character at offset %d", ErrInvalidDelivery, name, i)
		}
	}
	return v, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isLowerAlnum(c byte) bool { return isDigit(c) || (c >= 'a' && c <= 'z') }

// isNameByte accepts event and target type names: "workflow_job",
// "check_run", "integration".
func isNameByte(c byte) bool { return isLowerAlnum(c) || c == '_' }

// isGUIDByte accepts a GUID in any case, with its dashes.
func isGUIDByte(c byte) bool { return isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '-' }
