package clickhouse

import (
	"fmt"
	"regexp/syntax"
	"strings"
	"unicode"
)

// re2Pattern rewrites a Go regular expression (RE2 syntax, already
// checked by logs.NewQuery) for ClickHouse's match(), so that the server
// drops the lines that cannot match before sorting and sending them.
//
// ClickHouse runs RE2 too, but behind its own pattern analysis (which,
// for one, misses non-ASCII case folding in 18.16: match('ÉX', '(?i)éx')
// is 0), with `.` matching a newline, and on bytes. So the rewrite is
// built from Go's parse tree with the fewest constructs: no flags, case
// folding spelled out as classes, every class as explicit code point
// ranges, every punctuation escaped; anchors for text and line are the
// same on a line (it holds no newline). It is a filter only: the
// collector still checks every line against the Go pattern, so a
// difference could only hide a match, and TestRE2PatternAgreesOnServer
// compares the two on a real server. ok is false for a pattern it does
// not rewrite (the search then filters in Go alone).
func re2Pattern(pattern string) (out string, ok bool) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", false
	}
	var b strings.Builder
	if err := writeRE2(&b, re); err != nil {
		return "", false
	}
	return b.String(), true
}

func writeRE2(b *strings.Builder, re *syntax.Regexp) error {
	switch re.Op {
	case syntax.OpEmptyMatch:
		b.WriteString("(?:)")
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 && unicode.SimpleFold(r) != r {
				writeClass(b, foldOrbit(r))
			} else {
				writeRune(b, r)
			}
		}
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return fmt.Errorf("an empty class")
		}
		writeClass(b, re.Rune)
	case syntax.OpAnyCharNotNL:
		b.WriteString(`[^\n]`)
	case syntax.OpAnyChar:
		b.WriteString(`[\x{0}-\x{10FFFF}]`)
	case syntax.OpBeginLine, syntax.OpBeginText:
		b.WriteString("^")
	case syntax.OpEndLine, syntax.OpEndText:
		b.WriteString("$")
	case syntax.OpWordBoundary:
		b.WriteString(`\b`)
	case syntax.OpNoWordBoundary:
		b.WriteString(`\B`)
	case syntax.OpCapture:
		return writeGroup(b, re.Sub[0], "")
	case syntax.OpStar:
		return writeGroup(b, re.Sub[0], "*")
	case syntax.OpPlus:
		return writeGroup(b, re.Sub[0], "+")
	case syntax.OpQuest:
		return writeGroup(b, re.Sub[0], "?")
	case syntax.OpRepeat:
		if re.Max < 0 {
			return writeGroup(b, re.Sub[0], fmt.Sprintf("{%d,}", re.Min))
		}
		return writeGroup(b, re.Sub[0], fmt.Sprintf("{%d,%d}", re.Min, re.Max))
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if err := writeRE2(b, sub); err != nil {
				return err
			}
		}
	case syntax.OpAlternate:
		b.WriteString("(?:")
		for i, sub := range re.Sub {
			if i > 0 {
				b.WriteByte('|')
			}
			if err := writeRE2(b, sub); err != nil {
				return err
			}
		}
		b.WriteByte(')')
	default: // OpNoMatch and anything newer
		return fmt.Errorf("op %v", re.Op)
	}
	return nil
}

// writeGroup writes (?:sub) and a repetition after it.
func writeGroup(b *strings.Builder, sub *syntax.Regexp, rep string) error {
	b.WriteString("(?:")
	if err := writeRE2(b, sub); err != nil {
		return err
	}
	b.WriteByte(')')
	b.WriteString(rep)
	return nil
}

// writeRune writes r to match itself: letters, digits and space as they
// are, other ASCII escaped, the rest as its code point.
func writeRune(b *strings.Builder, r rune) {
	switch {
	case r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ' '):
		b.WriteRune(r)
	default:
		fmt.Fprintf(b, `\x{%X}`, r)
	}
}

// writeClass writes a class of the ranges in pairs (lo, hi, lo, hi, …).
func writeClass(b *strings.Builder, ranges []rune) {
	b.WriteByte('[')
	for i := 0; i+1 < len(ranges); i += 2 {
		if ranges[i] == ranges[i+1] {
			fmt.Fprintf(b, `\x{%X}`, ranges[i])
		} else {
			fmt.Fprintf(b, `\x{%X}-\x{%X}`, ranges[i], ranges[i+1])
		}
	}
	b.WriteByte(']')
}

// foldOrbit is the class of r and the runes it equals under simple case
// folding (k, K and the Kelvin sign).
func foldOrbit(r rune) []rune {
	var out []rune
	for f := r; ; {
		out = append(out, f, f)
		if f = unicode.SimpleFold(f); f == r {
			return out
		}
	}
}
