package clickhouse

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// re2Cases are patterns a user may search with (and a few meant to
// trip a rewrite) and lines to match them against.
var re2Cases = struct {
	patterns []string
	lines    []string
}{
	patterns: []string{
		`^(?i)E.*T$`, `error: .*timeout`, `(?i)timeout`, `(?i)éx`, `(?i)k`, `(?i)ſ`, `\d{3,}ms`, `^\s*at .*\.go:\d+$`,
		`[[:upper:]]{2}`, `\bfail(ed|ure)?\b`, `\Bail`, `a|b|`, `x*`, `^$`, `(?m)^job \d+ line`, `(?s)a.b`, `a.b`,
		`\pL+\d`, `\p{Greek}`, `[^a-z ]`, `[\]\[\\^-]`, `'; DROP TABLE x; --`, `\x00|\x{FFFD}`, `\Q.*+?\E`,
		`(?U)a+?`, `a{2}`, `a{2,}`, `a{0,2}b`, `[\x{1F600}-\x{1F64F}]`, `日本`, `(?i)straße`, `\\n`, `\$\{\{ secrets \}\}`,
		`(a(b(c)))`, `(?i:ab)c`, `[a-c--x]`, `\.\*\+\?\(\)\|`, `^[^\n]*$`, `\W+\w`, `(?i)[k-m]`,
	},
	lines: []string{
		"", "job 7 line 12345: error: connect to 10.0.0.1:443 timeout after 30s", "ERROR TIMEOUT", "ÉX", "éx", "K", "\u212a",
		"s", "ſ", "S", "took 1234ms", "\tat main.go:12", "AB", "failed", "failure", "fail", "mail", "a", "b", "", "aab",
		"a\rb", "a\u00e9b", "x9", "αβγ", "[]\\^-", "'; DROP TABLE x; --", "\uFFFD", ".*+?", "😀", "日本語", "STRASSE", "straße",
		"\\n", "${{ secrets }}", "abc", "ABc", "a-c", ".*+?()|", "x y!", "l", "M",
	},
}

// The rewrite means what the Go pattern means, checked by Go's own
// engine (the rewrite is Go syntax too).
func TestRE2PatternMeansTheSame(t *testing.T) {
	for _, p := range re2Cases.patterns {
		checkRE2Pattern(t, p, re2Cases.lines)
	}
}

func FuzzRE2Pattern(f *testing.F) {
	for i, p := range re2Cases.patterns {
		f.Add(p, re2Cases.lines[i%len(re2Cases.lines)])
	}
	f.Fuzz(func(t *testing.T, pattern, line string) {
		if len(pattern) > 256 || !utf8.ValidString(pattern) || !utf8.ValidString(line) || strings.Contains(line, "\n") {
			return
		}
		if _, err := regexp.Compile(pattern); err != nil {
			return
		}
		checkRE2Pattern(t, pattern, []string{line})
	})
}

func checkRE2Pattern(t *testing.T, pattern string, lines []string) {
	t.Helper()
	out, ok := re2Pattern(pattern)
	if !ok {
		return
	}
	re, err := regexp.Compile(out)
	if err != nil {
		t.Fatalf("%q → %q: %v", pattern, out, err)
	}
	orig := regexp.MustCompile(pattern)
	for _, l := range lines {
		if orig.MatchString(l) != re.MatchString(l) {
			t.Errorf("%q → %q on %q: %v, rewritten %v", pattern, out, l, orig.MatchString(l), re.MatchString(l))
		}
	}
}

// The rewrite means on a real ClickHouse server (its match()) what the
// Go pattern means in Go: otherwise a search could miss lines.
func TestRE2PatternAgreesOnServer(t *testing.T) {
	ctx := context.Background()
	s := OpenTestStore(t)
	var arr []string
	for _, l := range re2Cases.lines {
		arr = append(arr, quote(l))
	}
	for _, p := range re2Cases.patterns {
		out, ok := re2Pattern(p)
		if !ok {
			t.Errorf("%q: not rewritten", p)
			continue
		}
		got, err := s.c.do(ctx, "SELECT arrayMap(t -> match(t, "+quote(out)+"), ["+strings.Join(arr, ", ")+"]) FORMAT TabSeparated", nil, readSettings(0))
		if err != nil {
			t.Errorf("%q → %q: %v", p, out, err)
			continue
		}
		re := regexp.MustCompile(p)
		var want []string
		for _, l := range re2Cases.lines {
			if re.MatchString(l) {
				want = append(want, "1")
			} else {
				want = append(want, "0")
			}
		}
		if g, w := strings.TrimSpace(string(got)), "["+strings.Join(want, ",")+"]"; g != w {
			t.Errorf("%q → %q: server %s, Go %s (lines %q)", p, out, g, w, re2Cases.lines)
		}
	}
}
