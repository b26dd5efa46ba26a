package registry

import (
	"strings"
	"testing"
	"time"
)

// The parsers of untrusted input: request paths (names, references,
// digests, upload ids), Range and Content-Range, token scopes, upstreams'
// WWW-Authenticate challenges, manifests, and registry tokens. None may
// panic; what they accept must hold the invariants the rest relies on.

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/b/manifests/latest", "/v2/a/blobs/sha256:" + hexA, "/v2/a/blobs/uploads/",
		"/v2/a/../b/manifests/x", "/v2/a/tags/list", "/v2/a//b/blobs/uploads/0123456789abcdefghjkmnpqrs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		tg, err := ParsePath(p)
		if err != nil {
			return
		}
		if tg.Name != "" {
			if !ValidName(tg.Name) {
				t.Fatalf("accepted name %q", tg.Name)
			}
			for c := range strings.SplitSeq(tg.Name, "/") {
				if c == "." || c == ".." || c == "" {
					t.Fatalf("accepted a path trick %q", tg.Name)
				}
			}
		}
		if tg.Endpoint == EndpointManifest && !tg.Ref.IsDigest() && !ValidTag(tg.Ref.Tag) {
			t.Fatalf("accepted tag %q", tg.Ref.Tag)
		}
	})
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", "sha256:" + hexA, "sha512:x", "a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("%q round-trips to %q", s, r.String())
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-1", "bytes=-5", "bytes=3-", "bytes=1-0", "bytes=0-1,2-3"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		off, n, ok, err := ParseRange(h, size)
		if ok && (err != nil || off < 0 || n <= 0 || off+n > size) {
			t.Fatalf("ParseRange(%q, %d) = %d, %d, %v, %v", h, size, off, n, ok, err)
		}
		if s, e, err := parseContentRange(h); err == nil && (s < 0 || e < s) {
			t.Fatalf("parseContentRange(%q) = %d, %d", h, s, e)
		}
	})
}

func FuzzParseScopes(f *testing.F) {
	f.Add("repository:a/b:pull,push repository:c:*")
	f.Add("registry:catalog:*")
	f.Fuzz(func(t *testing.T, s string) {
		scopes, err := ParseScopes([]string{s})
		if err != nil {
			return
		}
		for _, sc := range scopes {
			if !ValidName(sc.Name) {
				t.Fatalf("accepted name %q", sc.Name)
			}
			for _, a := range sc.Actions {
				if a != actionPull && a != actionPush {
					t.Fatalf("accepted action %q", a)
				}
			}
		}
	})
}

func FuzzParseChallenges(f *testing.F) {
	f.Add(`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`)
	f.Add(`Basic realm="x", Bearer realm=y`)
	f.Add(`Bearer realm="a\"b"`)
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseChallenges([]string{s})
		if err != nil {
			return
		}
		for _, c := range cs {
			if c.Scheme == "" || c.Scheme != strings.ToLower(c.Scheme) {
				t.Fatalf("scheme %q", c.Scheme)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	d := "sha256:" + hexA
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"`+MediaTypeOCIManifest+`","config":{"mediaType":"c","digest":"`+d+`","size":1},"layers":[]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"m","digest":"`+d+`","size":1}]}`), MediaTypeOCIIndex)
	f.Add([]byte(`{"schemaVersion":1}`), "")
	f.Fuzz(func(t *testing.T, b []byte, ct string) {
		m, err := ParseManifest(b, ct)
		if err != nil {
			return
		}
		if !knownManifestType(m.MediaType) {
			t.Fatalf("accepted type %q", m.MediaType)
		}
		if m.IsIndex() == (len(m.Blobs) > 0) && (len(m.Blobs) > 0 || len(m.Manifests) > 0) {
			t.Fatalf("index %v with blobs %d", m.IsIndex(), len(m.Blobs))
		}
		for _, d := range append(m.Blobs, m.Manifests...) {
			if d.Size < 0 {
				t.Fatal("negative size")
			}
		}
	})
}

func FuzzVerifyToken(f *testing.F) {
	s := &tokenSigner{key: []byte(strings.Repeat("k", 32)), ttl: time.Minute, now: time.Now}
	tok, _, _ := s.Sign(TokenClaims{Org: "acme", Access: []Scope{{Name: "a", Actions: []string{"pull"}}}}, 0)
	f.Add(tok)
	f.Add(TokenPrefix + "e30.AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok)
		if err == nil && c.Org != "acme" {
			t.Fatalf("forged token accepted: %+v", c)
		}
	})
}
