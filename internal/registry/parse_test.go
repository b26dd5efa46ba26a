package registry

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestValidName(t *testing.T) {
	good := []string{"a", "library/alpine", "docker.io/library/alpine", "a-b--c/d__e/f.g", "org_01abc/app", "0/1/2"}
	bad := []string{"", "A", "a/", "/a", "a//b", "..", "a/../b", "./a", "a/.", "a_", "_a", "a.", "a___b", "a..b", "a/b c",
		"a%2fb", "a\\b", "a:b", "é", strings.Repeat("a", 256)}
	for _, n := range good {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	for _, n := range bad {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true", n)
		}
	}
}

func TestParseReference(t *testing.T) {
	for _, s := range []string{"latest", "v1.2.3", "_x", "A-b.c_D", strings.Repeat("t", 128)} {
		if r, err := ParseReference(s); err != nil || r.Tag != s {
			t.Errorf("ParseReference(%q) = %+v, %v", s, r, err)
		}
	}
	if r, err := ParseReference("sha256:" + hexA); err != nil || !r.IsDigest() || r.String() != "sha256:"+hexA {
		t.Errorf("digest: %+v, %v", r, err)
	}
	for s, want := range map[string]error{
		".x": errBadTag, "-x": errBadTag, strings.Repeat("t", 129): errBadTag, "": errBadTag, "a/b": errBadTag,
		"sha256:" + strings.ToUpper(hexA): errBadDigest, "sha256:abc": errBadDigest, "sha512:" + hexA + hexA: errUnsupportedDigest,
		":": errBadDigest, "SHA256:" + hexA: errBadDigest,
	} {
		if _, err := ParseReference(s); !errors.Is(err, want) {
			t.Errorf("ParseReference(%q) = %v, want %v", s, err, want)
		}
	}
}

func TestParsePath(t *testing.T) {
	d := "sha256:" + hexA
	dg, _ := ParseDigest(d)
	for path, want := range map[string]Target{
		"/v2/":                                 {Endpoint: EndpointBase},
		"/v2/token":                            {Endpoint: EndpointToken},
		"/v2/_catalog":                         {Endpoint: EndpointCatalog},
		"/v2/library/alpine/manifests/latest":  {Endpoint: EndpointManifest, Name: "library/alpine", Ref: Reference{Tag: "latest"}},
		"/v2/a/manifests/" + d:                 {Endpoint: EndpointManifest, Name: "a", Ref: Reference{Digest: dg}},
		"/v2/a/blobs/b/manifests/x":            {Endpoint: EndpointManifest, Name: "a/blobs/b", Ref: Reference{Tag: "x"}},
		"/v2/a/b/blobs/" + d:                   {Endpoint: EndpointBlob, Name: "a/b", Digest: dg},
		"/v2/a/blobs/uploads/":                 {Endpoint: EndpointUploads, Name: "a"},
		"/v2/a/blobs/uploads/" + newUploadID(): {Endpoint: EndpointUpload, Name: "a"},
		"/v2/a/tags/list":                      {Endpoint: EndpointTags, Name: "a"},
		"/v2/a/referrers/" + d:                 {Endpoint: EndpointReferrers, Name: "a", Digest: dg},
	} {
		got, err := ParsePath(path)
		if err != nil {
			t.Errorf("ParsePath(%q): %v", path, err)
			continue
		}
		got.Upload = ""
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParsePath(%q) (-want +got):\n%s", path, diff)
		}
	}
	for path, want := range map[string]error{
		"/v2/../etc/manifests/x":     errBadName,
		"/v2/a/../b/manifests/x":     errBadName,
		"/v2//a/manifests/x":         errBadName,
		"/v2/A/manifests/x":          errBadName,
		"/v2/manifests/x":            errBadName,
		"/v2/a/manifests/x/y":        errNoRoute,
		"/v2/a/blobs/latest":         errBadDigest,
		"/v2/a/blobs/uploads/../../": errNoRoute,
		"/v2/a/blobs/uploads/xyz":    errUploadUnknown,
		"/v2/a":                      errNoRoute,
		"/api/v1/jobs":               errNameUnknown,
		"/v2/a/tags/lists":           errNoRoute,
	} {
		if _, err := ParsePath(path); !errors.Is(err, want) {
			t.Errorf("ParsePath(%q) = %v, want %v", path, err, want)
		}
	}
}

func TestParseRange(t *testing.T) {
	type res struct {
		Off, N int64
		OK     bool
		Err    bool
	}
	for h, want := range map[string]res{
		"":                            {},
		"bytes=0-9":                   {0, 10, true, false},
		"bytes=5-":                    {5, 95, true, false},
		"bytes=-10":                   {90, 10, true, false},
		"bytes=-1000":                 {0, 100, true, false},
		"bytes=90-1000":               {90, 10, true, false},
		"bytes=100-":                  {0, 0, false, true},
		"bytes=-0":                    {0, 0, false, true},
		"bytes=5-4":                   {},
		"bytes=0-1,4-5":               {},
		"items=0-1":                   {},
		"bytes=a-b":                   {},
		"bytes=-":                     {},
		"bytes=+1-2":                  {},
		"bytes=99999999999999999999-": {},
	} {
		off, n, ok, err := ParseRange(h, 100)
		got := res{off, n, ok, err != nil}
		if got != want {
			t.Errorf("ParseRange(%q) = %+v, want %+v", h, got, want)
		}
	}
}

func TestParseScopes(t *testing.T) {
	got, err := ParseScopes([]string{"repository:a/b:pull,push repository:a/b:pull", "repository:c:*", "registry:catalog:*", "repository(plugin):d:pull,delete"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Scope{{Name: "a/b", Actions: []string{"pull", "push"}}, {Name: "c", Actions: []string{"pull", "push"}}, {Name: "d", Actions: []string{"pull"}}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, bad := range []string{"repository", "repository:a", "repository:A:pull", "repository:../x:pull"} {
		if _, err := ParseScopes([]string{bad}); err == nil {
			t.Errorf("ParseScopes(%q) accepted", bad)
		}
	}
	if _, err := ParseScopes([]string{strings.Repeat("repository:a:pull ", maxScopes+1)}); err == nil {
		t.Error("too many scopes accepted")
	}
}

func TestParseChallenges(t *testing.T) {
	got, err := ParseChallenges([]string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`,
		`Basic realm="x \"y\"", Bearer realm=z`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Challenge{
		{Scheme: "bearer", Params: map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/alpine:pull"}},
		{Scheme: "basic", Params: map[string]string{"realm": `x "y"`}},
		{Scheme: "bearer", Params: map[string]string{"realm": "z"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, bad := range []string{`Bearer realm="unterminated`, `Bearer realm=`, `Bearer realm="a" junk="b" x`, "Bearer realm=\"a\x01\"", `=x`} {
		if cs, err := ParseChallenges([]string{bad}); err == nil {
			t.Errorf("ParseChallenges(%q) = %+v, want an error", bad, cs)
		}
	}
}

func TestParseManifest(t *testing.T) {
	d := "sha256:" + hexA
	img := `{"schemaVersion":2,"mediaType":"` + MediaTypeDockerManifest + `","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` + d + `","size":2},"layers":[{"mediaType":"l","digest":"` + d + `","size":3}]}`
	m, err := ParseManifest([]byte(img), MediaTypeDockerManifest)
	if err != nil || m.MediaType != MediaTypeDockerManifest || len(m.Blobs) != 2 || m.Blobs[1].Size != 3 {
		t.Fatalf("%+v, %v", m, err)
	}
	idx := `{"schemaVersion":2,"manifests":[{"mediaType":"` + MediaTypeOCIManifest + `","digest":"` + d + `","size":5}]}`
	if m, err := ParseManifest([]byte(idx), ""); err != nil || m.MediaType != MediaTypeOCIIndex || len(m.Manifests) != 1 {
		t.Fatalf("index: %+v, %v", m, err)
	}
	for name, body := range map[string]string{
		"schema1":       `{"schemaVersion":1,"name":"x"}`,
		"not json":      `{`,
		"type clash":    img,
		"no size":       `{"schemaVersion":2,"config":{"mediaType":"c","digest":"` + d + `"}}`,
		"bad digest":    `{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:x","size":1}}`,
		"both":          `{"schemaVersion":2,"config":{"mediaType":"c","digest":"` + d + `","size":1},"manifests":[]}`,
		"unknown type":  `{"schemaVersion":2,"mediaType":"text/plain","config":{"mediaType":"c","digest":"` + d + `","size":1}}`,
		"index layers":  `{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[],"layers":[]}`,
		"negative size": `{"schemaVersion":2,"config":{"mediaType":"c","digest":"` + d + `","size":-1}}`,
	} {
		ct := ""
		if name == "type clash" {
			ct = MediaTypeOCIManifest
		}
		if _, err := ParseManifest([]byte(body), ct); !errors.Is(err, errBadManifest) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAccepts(t *testing.T) {
	if !accepts(nil, MediaTypeOCIIndex) || !accepts([]string{"application/json"}, MediaTypeOCIIndex) ||
		!accepts([]string{MediaTypeDockerManifest + ", " + MediaTypeOCIIndex + ";q=0.5"}, MediaTypeOCIIndex) || !accepts([]string{"*/*"}, MediaTypeOCIIndex) {
		t.Error("accepts refused")
	}
	if accepts([]string{MediaTypeDockerManifest, MediaTypeDockerList}, MediaTypeOCIIndex) {
		t.Error("accepts an OCI index for a Docker-only client")
	}
}

func TestMatchPattern(t *testing.T) {
	for _, c := range []struct {
		pat, name string
		want      bool
	}{
		{"docker.io/library/*", "docker.io/library/alpine", true},
		{"docker.io/library/*", "docker.io/library/a/b", false},
		{"ghcr.io/acme/**", "ghcr.io/acme", true},
		{"ghcr.io/acme/**", "ghcr.io/acme/x/y", true},
		{"ghcr.io/acme/**", "ghcr.io/acmex/y", false},
		{"**", "anything/at/all", true},
		{"*/library/alp*", "docker.io/library/alpine", true},
	} {
		if got := matchPattern(c.pat, c.name); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v", c.pat, c.name, got)
		}
	}
	for _, bad := range []string{"", "a//b", "a/[x]", "a/b**", "a?"} {
		if validPattern(bad) {
			t.Errorf("validPattern(%q)", bad)
		}
	}
}
