package clickhouse

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// unquote reads a ClickHouse string literal of the form quote writes,
// refusing anything else: what the server would read it as.
func unquote(lit string) (string, error) {
	if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		return "", errors.New("not quoted")
	}
	var out []byte
	body := lit[1 : len(lit)-1]
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '\'':
			return "", errors.New("a bare quote")
		case '\\':
			if i+3 >= len(body) || body[i+1] != 'x' {
				return "", errors.New("an escape other than \\xHH")
			}
			b, err := hex.DecodeString(body[i+2 : i+4])
			if err != nil {
				return "", err
			}
			out = append(out, b[0])
			i += 3
		default:
			if c < 0x20 || c >= 0x7f {
				return "", errors.New("a raw control or non-ASCII byte")
			}
			out = append(out, c)
		}
	}
	return string(out), nil
}

// Any value becomes one literal of printable ASCII that means exactly it.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "org_a", "' OR '1'='1", `\'; DROP TABLE x; --`, "\x00\xff\n\t", "日本語", `\x27`, "?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := quote(s)
		got, err := unquote(lit)
		if err != nil || got != s {
			t.Fatalf("quote(%q) = %s: read back %q, %v", s, lit, got, err)
		}
		if strings.ContainsAny(lit[1:len(lit)-1], "'\\\n\r\x00") && !strings.Contains(lit, `\x`) {
			t.Fatalf("quote(%q) = %s holds syntax", s, lit)
		}
	})
}

// RowBinary rows round-trip, whatever the values.
func FuzzRowBinary(f *testing.F) {
	f.Add("org_a", "job_1", int64(7), uint64(42), []byte("line\x00\xff"), true)
	f.Add("", "", int64(-1), uint64(0), []byte{}, false)
	f.Fuzz(func(t *testing.T, org, job string, n int64, u uint64, data []byte, flag bool) {
		var w rowWriter
		for range 2 {
			w.str(org)
			w.str(job)
			w.i64(n)
			w.u64(u)
			w.bytes(data)
			w.u8(flag)
		}
		r := rowReader{b: w.b}
		for range 2 {
			if r.str() != org || r.str() != job || r.i64() != n || r.u64() != u || !bytes.Equal(r.bytes(), data) || r.u8() != flag {
				t.Fatalf("round trip failed: %v", r.err)
			}
		}
		if r.err != nil || r.more() {
			t.Fatalf("after two rows: %v, %d bytes left", r.err, len(r.b))
		}
	})
}

// Any answer is read without panicking or allocating past the bound: an
// error, or rows.
func FuzzDecodeLines(f *testing.F) {
	var w rowWriter
	writeLineRow(&w, lineRow{job: "job_1", line: 3, text: "hello"})
	f.Add(w.b)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add([]byte{5, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := decodeLines(b, "org_a")
		if err == nil {
			for _, l := range rows {
				if l.Org != "org_a" {
					t.Fatalf("a line of another org: %+v", l)
				}
			}
		}
	})
}
