package logs

import (
	"errors"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRequiredLiterals(t *testing.T) {
	for _, tc := range []struct {
		re   string
		want []string
	}{
		{`error: .*timeout`, []string{"error: ", "timeout"}},
		{`connect(ion)? refused`, []string{" refused", "connect"}},
		{`(foo)bar+baz`, []string{"fooba", "baz"}},
		{`a|b`, nil},
		{`(?i)timeout`, nil},
		{`x{2,}yz`, nil},
		{`^exit code [0-9]+$`, []string{"exit code "}},
		{`[ab]cd`, nil},
		{`timeout`, []string{"timeout"}},
		{`日本語`, []string{"日本語"}},
	} {
		re, err := syntax.Parse(tc.re, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if got := RequiredLiterals(re); !cmp.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.re, got, tc.want)
		}
	}
}

// Every string a pattern matches contains the literals found for it.
func FuzzRequiredLiterals(f *testing.F) {
	for _, s := range [][2]string{{`error: .*timeout`, "error: read timeout"}, {`(ab)+c?d{2}`, "ababdd"}, {`x(?:yz|yw)`, "xyw"}, {`(?i)abc`, "ABC"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, text string) {
		re, err := syntax.Parse(pattern, syntax.Perl)
		if err != nil {
			return
		}
		compiled, err := regexp.Compile(pattern)
		if err != nil || !compiled.MatchString(text) {
			return
		}
		for _, lit := range RequiredLiterals(re) {
			if !strings.Contains(text, lit) {
				t.Fatalf("%q matches %q, which does not contain the literal %q", pattern, text, lit)
			}
		}
	})
}

// Bad searches are the caller's errors, each saying what is wrong; the
// bounds are applied.
func TestNewQuery(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []SearchParams{
		{},
		{Pattern: "("},
		{Pattern: strings.Repeat("a", 100<<10)},
		{Pattern: "\xff"},
		{Pattern: "x", Limit: MaxSearchLines + 1},
		{Pattern: "x", Since: now.Add(-100 * 24 * time.Hour)},
		{Pattern: "x", Since: now, Until: now.Add(-time.Hour)},
		{Pattern: "x", Repo: strings.Repeat("r", 300)},
		{Pattern: "x", Job: strings.Repeat("j", 100)},
		{Pattern: "a{1001}"},
	} {
		if _, err := NewQuery("org_a", p, now); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+.40v: %v, want ErrInvalid", p, err)
		}
	}
	if _, err := NewQuery("", SearchParams{Pattern: "x"}, now); !errors.Is(err, ErrNoScope) {
		t.Errorf("no org: %v", err)
	}
	q, err := NewQuery("org_a", SearchParams{Pattern: "error: .*timeout"}, now)
	if err != nil || q.Org != "org_a" || !q.Until.Equal(now) || !q.Since.Equal(now.Add(-DefaultSearchRange)) || q.Limit != 100 ||
		q.Scan != DefaultScan || q.Timeout != DefaultSearchTimeout || len(q.Literals) != 2 {
		t.Errorf("defaults: %+v, %v", q, err)
	}
}

func TestRequiredFoldLiterals(t *testing.T) {
	for _, tc := range []struct {
		re   string
		want []string
	}{
		{`(?i)timeout`, []string{"timeout"}},
		{`(?i)error: .*TIMEOUT`, []string{"error: ", "timeout"}},
		{`(?i)task failed`, []string{" failed"}},
		{`(?i)échec du délai`, []string{"chec du d", "lai"}},
		{`^(?i)E.*T$`, nil},
		{`Exit (?i:code) 1`, []string{"exit code 1"}},
		{`(?i)a|b`, nil},
		{`(?i)[ab]cde`, []string{"cde"}},
	} {
		re, err := syntax.Parse(tc.re, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		if got := RequiredFoldLiterals(re); !cmp.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.re, got, tc.want)
		}
	}
}

// Every string a pattern matches contains, in ASCII lower case, the
// folded literals found for it.
func FuzzRequiredFoldLiterals(f *testing.F) {
	for _, s := range [][2]string{{`(?i)error: .*timeout`, "ERROR: read Timeout"}, {`(?i)kelvin`, "\u212aelvin"}, {`(?i)ßtraße`, "ẞTRASSE"}, {`x(?i:yz|yw)`, "xYW"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, text string) {
		re, err := syntax.Parse(pattern, syntax.Perl)
		if err != nil {
			return
		}
		compiled, err := regexp.Compile(pattern)
		if err != nil || !compiled.MatchString(text) {
			return
		}
		lower := strings.Map(func(r rune) rune {
			if r >= 'A' && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}, text)
		for _, lit := range RequiredFoldLiterals(re) {
			if !strings.Contains(lower, lit) {
				t.Fatalf("%q matches %q, which does not contain the folded literal %q", pattern, text, lit)
			}
		}
	})
}
