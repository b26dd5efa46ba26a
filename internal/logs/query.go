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
func RequiredLiterals(re *syntax.Regexp) []string {
	var out []string
	collectRequired(re.Simplify(), &out)
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	out = slices.Compact(out)
	var keep []string
	for _, s := range out {
		if len(s) >= minLiteral && len(keep) < maxLiterals && !slices.Contains(keep, s) {
			keep = append(keep, s)
		}
	}
	return keep
}

// collectRequired adds to out strings every match of re contains.
func collectRequired(re *syntax.Regexp, out *[]string) {
	switch re.Op {
	case syntax.OpLiteral, syntax.OpCapture:
		if s, ok := exact(re); ok {
			*out = append(*out, s)
		} else if re.Op == syntax.OpCapture {
			collectRequired(re.Sub[0], out)
		}
	case syntax.OpPlus:
		collectRequired(re.Sub[0], out)
	case syntax.OpRepeat:
		if re.Min >= 1 {
			collectRequired(re.Sub[0], out)
		}
	case syntax.OpConcat:
		run := ""
		for _, sub := range re.Sub {
			if s, ok := exact(sub); ok {
				run += s
				continue
			}
			*out = append(*out, run)
			run = ""
			collectRequired(sub, out)
		}
		*out = append(*out, run)
	}
}

// exact returns the one string re matches, when it matches only one
// (and case matters).
func exact(re *syntax.Regexp) (string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return "", false
		}
		return string(re.Rune), true
	case syntax.OpEmptyMatch:
		return "", true
	case syntax.OpCapture:
		return exact(re.Sub[0])
	case syntax.OpConcat:
		s := ""
		for _, sub := range re.Sub {
			e, ok := exact(sub)
			if !ok {
				return "", false
			}
			s += e
		}
		return s, true
	}
	return "", false
}
