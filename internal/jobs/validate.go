package jobs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalid marks a request the caller must fix (400).
var ErrInvalid = errors.New("invalid request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

const (
	maxArgs       = 1024
	maxArgBytes   = 128 << 10
	maxEnvVars    = 256
	maxEnvBytes   = 128 << 10
	maxLabels     = 32
	maxLabelLen   = 64
	maxIdemKeyLen = 128
)

func validateSubmission(s *Submission, cfg Config) error {
	if s.OrgID == "" {
		return invalid("org: missing")
	}
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return invalid("argv: must name a command")
	}
	if len(s.Argv) > maxArgs {
		return invalid("argv: %d arguments, at most %d", len(s.Argv), maxArgs)
	}
	total := 0
	for i, a := range s.Argv {
		if strings.IndexByte(a, 0) >= 0 || !utf8.ValidString(a) {
			return invalid("argv[%d]: must be UTF-8 without NUL bytes", i)
		}
		total += len(a)
	}
	if total > maxArgBytes {
		return invalid("argv: %d bytes, at most %d", total, maxArgBytes)
	}
	if len(s.Env) > maxEnvVars {
		return invalid("env: %d variables, at most %d", len(s.Env), maxEnvVars)
	}
	total = 0
	for k, v := range s.Env {
		if !validEnvName(k) {
			return invalid("env: %q is not a valid variable name", k)
		}
		if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			return invalid("env %s: value must be UTF-8 without NUL bytes", k)
		}
		total += len(k) + len(v)
	}
	if total > maxEnvBytes {
		return invalid("env: %d bytes, at most %d", total, maxEnvBytes)
	}
	if c := s.Container; c != nil {
		if err := validImage(c.Image); err != nil {
			return err
		}
		// Only agents with the Docker executor take it.
		if !slices.Contains(s.Labels, containerLabel) {
			s.Labels = append(slices.Clone(s.Labels), containerLabel)
		}
	}
	labels, err := normalizeLabels(s.Labels)
	if err != nil {
		return err
	}
	s.Labels = labels
	switch {
	case s.Timeout < 0:
		return invalid("timeout: must not be negative")
	case s.Timeout == 0:
		s.Timeout = cfg.DefaultTimeout
	case s.Timeout > cfg.MaxTimeout:
		return invalid("timeout: %v is more than the maximum %v", s.Timeout, cfg.MaxTimeout)
	case s.Timeout < time.Second:
		return invalid("timeout: at least 1s")
	}
	if len(s.IdempotencyKey) > maxIdemKeyLen || !utf8.ValidString(s.IdempotencyKey) {
		return invalid("idempotency_key: at most %d bytes of UTF-8", maxIdemKeyLen)
	}
	return nil
}

func validEnvName(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i, c := range k {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// normalizeLabels lowercases (GitHub's labels are case-insensitive),
// sorts and de-duplicates labels, and refuses malformed ones.
func normalizeLabels(in []string) ([]string, error) {
	if len(in) > maxLabels {
		return nil, invalid("labels: %d, at most %d", len(in), maxLabels)
	}
	out := make([]string, 0, len(in))
	for _, l := range in {
		l = strings.ToLower(strings.TrimSpace(l))
		if l == "" || len(l) > maxLabelLen {
			return nil, invalid("label %q: must be 1-%d characters", l, maxLabelLen)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.:/", c)) {
				return nil, invalid("label %q: only letters, digits and -_.:/ are allowed", l)
			}
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// NormalizeLabels is normalizeLabels for other packages (agent labels,
// join tokens).
func NormalizeLabels(in []string) ([]string, error) { return normalizeLabels(in) }

// subset reports whether every label of a is in b.
func subset(a, b []string) bool {
	for _, l := range a {
		if !slices.Contains(b, l) {
			return false
		}
	}
	return true
}

// Subset is subset for other packages.
func Subset(a, b []string) bool { return subset(a, b) }

// containerLabel is apiv1.ContainerLabel: every job with a container has it.
const containerLabel = "container"

// maxImageRef bounds an image reference.
const maxImageRef = 512

// validImage checks an image reference's shape: what Docker accepts
// (lower-case name components, an optional registry host and port, tag
// or digest); the daemon has the last word.
func validImage(ref string) error {
	if ref == "" || len(ref) > maxImageRef {
		return invalid("container.image: want 1-%d bytes", maxImageRef)
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-/:@", c) >= 0
		if !ok {
			return invalid("container.image: %q has a character an image reference cannot have", ref)
		}
	}
	if strings.HasPrefix(ref, "-") || strings.Contains(ref, "..") || strings.HasPrefix(ref, "/") {
		return invalid("container.image: %q is not an image reference", ref)
	}
	return nil
}
