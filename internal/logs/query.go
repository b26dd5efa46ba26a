package logs

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"time"
	"unicode/utf8"
)

// ErrInvalid: a search the caller got wrong (the message says how).
var ErrInvalid = errors.New("invalid log search")

// SearchParams is a search as a caller asks for it.
type SearchParams struct {
	// Pattern is an RE2 regular expression (Go's syntax): `error: .*timeout`.
	Pattern string
	// Repo (owner/name) and Job narrow the search.
	Repo string
	Job  string
	// Since and Until bound the lines' times (zero Until: now; zero
	// Since: 7 days before Until).
	Since, Until time.Time
	// Limit bounds the lines returned (0: 100).
	Limit int
}

// Search defaults.
const (
	DefaultSearchRange = 7 * 24 * time.Hour
	defaultSearchLines = 100
	// DefaultSearchTimeout bounds a search's execution time.
	DefaultSearchTimeout = 10 * time.Second
	maxRepo              = 200
	maxJobID             = 64
	maxLiterals          = 4
	minLiteral           = 3
)

// NewQuery checks p and builds the query of org's logs that every store
// runs: the org scope is part of it, and so are the bounds (time range,
// lines returned, lines examined, execution time). Errors wrap
// ErrInvalid.
func NewQuery(org string, p SearchParams, now time.Time) (Query, error) {
	if org == "" {
		return Query{}, ErrNoScope
	}
	bad := func(format string, args ...any) (Query, error) {
		return Query{}, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case p.Pattern == "":
		return bad("q: a regular expression is required")
	case len(p.Pattern) > MaxPattern:
		return bad("q: at most %d bytes", MaxPattern)
	case !utf8.ValidString(p.Pattern):
		return bad("q: not UTF-8")
	case len(p.Repo) > maxRepo || !utf8.ValidString(p.Repo):
		return bad("repo: at most %d bytes of UTF-8", maxRepo)
	case len(p.Job) > maxJobID || !utf8.ValidString(p.Job):
		return bad("job: not a job id")
	case p.Limit < 0 || p.Limit > MaxSearchLines:
		return bad("limit: 1-%d", MaxSearchLines)
	}
	re, err := syntax.Parse(p.Pattern, syntax.Perl)
	if err != nil {
		return bad("q: %v", err)
	}
	if _, err := regexp.Compile(p.Pattern); err != nil {
		return bad("q: %v", err)
	}
	q := Query{Org: org, Pattern: p.Pattern, Literals: RequiredLiterals(re), Repo: p.Repo, Job: p.Job,
		Since: p.Since, Until: p.Until, Limit: p.Limit, Scan: DefaultScan, Timeout: DefaultSearchTimeout}
	if len(q.Literals) == 0 {
		q.FoldLiterals = RequiredFoldLiterals(re)
	}
	if q.Until.IsZero() {
		q.Until = now
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-DefaultSearchRange)
	}
	switch {
	case !q.Since.Before(q.Until):
		return bad("since must be before until")
	case q.Until.Sub(q.Since) > MaxRange:
		return bad("the time range is at most %d days", int(MaxRange/(24*time.Hour)))
	}
	if q.Limit == 0 {
		q.Limit = defaultSearchLines
	}
	return q, nil
}

// RequiredLiterals returns strings (of at least 3 bytes, at most 4 of
// them, longest first) that every string matching re contains: a store
// finds candidate lines with them through its index. Case-folded parts
// give none.
func RequiredLiterals(re *syntax.Regexp) []string { return required(re, exactRune) }

// RequiredFoldLiterals returns strings (lower case ASCII where they
// have letters; at least 3 bytes, at most 4, longest first) that every
// string matching re contains up to ASCII case: `(?i)timeout` gives
// "timeout", which a store can look up case-insensitively (SQLite's LIKE
// and lower() fold ASCII only). Folded runes past ASCII, and k and s
// (which also fold to the Kelvin sign and the long s), end a literal.
func RequiredFoldLiterals(re *syntax.Regexp) []string { return required(re, foldRune) }

// runeMap is how a literal's rune goes in a required string (fold: the
// pattern ignores its case); false ends the string there.
type runeMap func(r rune, fold bool) (string, bool)

// exactRune keeps a rune whose case matters, as it is.
func exactRune(r rune, fold bool) (string, bool) { return string(r), !fold }

func required(re *syntax.Regexp, m runeMap) []string {
	var out []string
	collectRequired(re.Simplify(), m, &out)
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	var keep []string
	for _, s := range out {
		if len(s) >= minLiteral && len(keep) < maxLiterals && !slices.Contains(keep, s) {
			keep = append(keep, s)
		}
	}
	return keep
}

// foldRune is r as it goes in a folded literal: ASCII in lower case;
// past ASCII only when case does not matter (fold false). A folded k or
// s is not (it also matches U+212A and U+017F, which ASCII folding does
// not reach).
func foldRune(r rune, fold bool) (string, bool) {
	switch {
	case r >= 'A' && r <= 'Z':
		r += 'a' - 'A'
		fallthrough
	case r >= 'a' && r <= 'z':
		if fold && (r == 'k' || r == 's') {
			return "", false
		}
		return string(r), true
	case r < 0x80:
		return string(r), true
	case !fold:
		return string(r), true
	}
	return "", false
}

// collectRequired adds to out strings (mapped by m) every match of re
// contains: runs of mapped runes, cut where one does not map.
func collectRequired(re *syntax.Regexp, m runeMap, out *[]string) {
	switch re.Op {
	case syntax.OpLiteral:
		run := ""
		for _, r := range re.Rune {
			if s, ok := m(r, re.Flags&syntax.FoldCase != 0); ok {
				run += s
				continue
			}
			*out = append(*out, run)
			run = ""
		}
		*out = append(*out, run)
	case syntax.OpCapture, syntax.OpPlus:
		collectRequired(re.Sub[0], m, out)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			collectRequired(re.Sub[0], m, out)
		}
	case syntax.OpConcat:
		run := ""
		for _, sub := range re.Sub {
			if s, ok := exact(sub, m); ok {
				run += s
				continue
			}
			*out = append(*out, run)
			run = ""
			collectRequired(sub, m, out)
		}
		*out = append(*out, run)
	}
}

// exact returns the one string (mapped by m) re matches, when it matches
// only one.
func exact(re *syntax.Regexp, m runeMap) (string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		s := ""
		for _, r := range re.Rune {
			f, ok := m(r, re.Flags&syntax.FoldCase != 0)
			if !ok {
				return "", false
			}
			s += f
		}
		return s, true
	case syntax.OpEmptyMatch:
		return "", true
	case syntax.OpCapture:
		return exact(re.Sub[0], m)
	case syntax.OpConcat:
		s := ""
		for _, sub := range re.Sub {
			e, ok := exact(sub, m)
			if !ok {
				return "", false
			}
			s += e
		}
		return s, true
	}
	return "", false
}
