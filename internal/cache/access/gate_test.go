package access

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct{ header, want string }{
		{"Bearer abc", "abc"},
		{"bearer  abc ", "abc"},
		{basic("bazel:tok"), "tok"},
		{basic("bazel:to:k"), "to:k"},
		{basic("no-colon"), ""},
		{"Basic %%%", ""},
		{"Token abc", ""},
		{"Bearer", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := BearerToken(tc.header); got != tc.want {
			t.Errorf("BearerToken(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

// FuzzBearerToken: any Authorization header yields a token or "", and the
// two forms a client may use carry the token through unchanged.
func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer abc", "abc")
	f.Add("Basic Og==", "x:y")
	f.Add("bAsIc", "")
	f.Fuzz(func(t *testing.T, header, token string) {
		BearerToken(header) // must not panic
		tok := strings.TrimSpace(token)
		if tok == "" || strings.ContainsAny(tok, "\r\n") {
			return
		}
		if got := BearerToken("Bearer " + token); got != tok {
			t.Fatalf("Bearer %q -> %q", token, got)
		}
		if got := BearerToken("Basic " + base64.StdEncoding.EncodeToString([]byte("user:"+token))); got != token {
			t.Fatalf("Basic user:%q -> %q", token, got)
		}
	})
}
