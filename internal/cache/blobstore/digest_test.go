package blobstore

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseHash is the key sanitiser: whatever a client sends, a hash that
// parses is exactly 64 lowercase hex digits (so no path can be built from
// anything else), and its String form round-trips.
func FuzzParseHash(f *testing.F) {
	f.Add(EmptyDigest.Hash.String())
	f.Add("../../etc/passwd")
	f.Add(strings.ToUpper(EmptyDigest.Hash.String()))
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if h.String() != s {
			t.Fatalf("ParseHash(%q) round-trips to %q", s, h.String())
		}
		if strings.Trim(s, "0123456789abcdef") != "" || len(s) != 64 {
			t.Fatalf("ParseHash accepted %q", s)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	f.Add("0")
	f.Add("9223372036854775807")
	f.Add("-1")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && (n < 0 || strings.Trim(s, "0123456789") != "") {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}
