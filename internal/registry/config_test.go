package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Configuration errors name the setting; unknown keys are errors.
func TestConfigErrorsNameTheSetting(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	_, pub := newKey(t)
	good := "upstreams:\n  - {name: docker.io, url: https://registry-1.docker.io}\n  - {name: ghcr.io, url: https://ghcr.io}\nmirror: docker.io\n" +
		"default: {upstreams: [docker.io], repositories: [\"docker.io/library/*\"]}\n" +
		"orgs:\n  org_a:\n    credentials: {ghcr.io: {username: u, password_file: " + pw + "}}\n    signatures: {keys: [" + pub + "], own: true}\n"
	c, err := ParseConfig([]byte(good))
	if err == nil {
		err = c.Validate()
	}
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	if string(c.Orgs["org_a"].Credentials["ghcr.io"].password) != "secret" || len(c.Orgs["org_a"].Signatures.keys) != 1 {
		t.Errorf("files not read: %+v", c.Orgs["org_a"])
	}
	for yaml, want := range map[string]string{
		"upstream: []\n": "field upstream not found",
		"upstreams:\n  - {name: Docker, url: https://x}\n":                                 "upstreams[0]: name",
		"upstreams:\n  - {name: x.io, url: ftp://x}\n":                                     "url",
		"upstreams:\n  - {name: x.io, url: https://x/path}\n":                              "no path",
		"upstreams:\n  - {name: x.io, url: https://x}\n  - {name: x.io, url: https://y}\n": "listed twice",
		"mirror: hub\n":                                         "mirror",
		"default: {upstreams: [nope]}\n":                        "default: upstreams",
		"default: {repositories: [\"a/[b]\"]}\n":                "repositories: pattern",
		"orgs: {org_a: {credentials: {nope: {username: u}}}}\n": "orgs.org_a: credentials",
		"upstreams:\n  - {name: x.io, url: https://x}\norgs: {org_a: {credentials: {x.io: {username: u, password_file: /nonexistent}}}}\n": "password_file",
		"orgs: {org_a: {signatures: {keys: []}}}\n":                 "at least one public key",
		"orgs: {org_a: {signatures: {keys: [/nonexistent.pub]}}}\n": "signatures: keys",
	} {
		c, err := ParseConfig([]byte(yaml))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error naming %q", yaml, err, want)
		}
	}
}
