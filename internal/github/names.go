package github

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on names. GitHub's own limits are these or tighter (logins are at
// most 39 characters on github.com, repository names 100); GHES may differ,
// so the login bound is loose.
const (
	maxLoginLen      = 100
	maxRepoNameLen   = 100
	maxLabelLen      = 256
	maxLabels        = 100
	maxRunnerNameLen = 64
)

// validPathName reports whether s can be used as one segment of an API path:
// an account login or a repository name. GitHub allows only ASCII letters,
// digits, '-', '_' and '.' in them.
func validPathName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isLowerAlnum(c) || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validateLabel checks one runner label: 1 to 256 bytes of UTF-8 with no
// control characters, no commas (the runner joins labels with commas) and no
// surrounding spaces.
func validateLabel(l string) error {
	switch {
	case l == "":
		return fmt.Errorf("is empty")
	case len(l) > maxLabelLen:
		return fmt.Errorf("is %d bytes long, at most %d allowed", len(l), maxLabelLen)
	case !utf8.ValidString(l):
		return fmt.Errorf("is not valid UTF-8")
	case strings.TrimSpace(l) != l:
		return fmt.Errorf("has leading or trailing spaces")
	case strings.ContainsRune(l, ','):
		return fmt.Errorf("contains a comma")
	case strings.IndexFunc(l, unicode.IsControl) >= 0:
		return fmt.Errorf("contains a control character")
	}
	return nil
}

// ValidateRunnerLabels checks labels for a just-in-time runner the way
// GitHub does before it is asked: 1 to 100 labels, each valid (see
// GenerateJITConfig), no two equal ignoring case (GitHub compares labels
// case-insensitively).
func ValidateRunnerLabels(labels []string) error {
	if len(labels) == 0 || len(labels) > maxLabels {
		return fmt.Errorf("runner needs 1 to %d labels, got %d", maxLabels, len(labels))
	}
	for i, l := range labels {
		if err := validateLabel(l); err != nil {
			return fmt.Errorf("label %d %w", i, err)
		}
		for _, prev := range labels[:i] {
			if strings.EqualFold(prev, l) {
				return fmt.Errorf("label %d repeats label %q", i, prev)
			}
		}
	}
	return nil
}

// validRunnerName reports whether s is a runner name Nimbus will ask for:
// 1 to 64 ASCII letters, digits, '-', '_' or '.'.
func validRunnerName(s string) bool { return validPathName(s, maxRunnerNameLen) }

// validText reports whether s is at most maxLen bytes with no control
// characters other than tab (names of jobs and workflows are free text).
func validText(s string, maxLen int) bool {
	if len(s) > maxLen {
		return false
	}
	for _, r := range s {
		if r != '\t' && unicode.IsControl(r) {
			return false
		}
	}
	return true
}
