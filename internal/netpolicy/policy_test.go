package netpolicy

import (
	"strings"
	"testing"
)

func TestParseAllowEntry(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		bad      bool
	}{
		{in: "Example.COM.", want: "example.com"},
		{in: "*.actions.githubusercontent.com", want: "*.actions.githubusercontent.com"},
		{in: "140.82.112.3/20", want: "140.82.112.0/20"},
		{in: "2606:50c0::/32", want: "2606:50c0::/32"},
		{in: "192.0.2.7", want: "192.0.2.7/32"},
		{in: "[2001:db8::1]", want: "2001:db8::1/128"},
		{in: "::ffff:192.0.2.7", want: "192.0.2.7/32"},
		{in: "*.com", bad: true},
		{in: "*", bad: true},
		{in: "a..b", bad: true},
		{in: "fe80::1%eth0", bad: true},
		{in: strings.Repeat("a", 64) + ".com", bad: true},
		{in: "", bad: true},
		{in: "ex ample.com", bad: true},
	} {
		pfx, name, err := parseAllowEntry(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("%q: accepted, want an error", tt.in)
			}
			continue
		}
		got := name.String()
		if pfx.IsValid() {
			got = pfx.String()
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %q %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseAllowEntry(f *testing.F) {
	for _, s := range []string{"example.com", "*.a.b", "10.0.0.0/8", "::1", "[::1]", "a_b.c", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pfx, name, err := parseAllowEntry(s)
		if err != nil {
			return
		}
		if pfx.IsValid() == (name.name != "") {
			t.Fatalf("%q: both or neither of prefix and name", s)
		}
		if name.name != "" {
			again, err := parseNamePattern(name.String())
			if err != nil || again != name {
				t.Fatalf("%q: %v does not round-trip: %v %v", s, name, again, err)
			}
		}
	})
}
