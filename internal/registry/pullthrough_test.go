package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// skopeoDigest returns the digest of the manifest skopeo copied to dir.
func skopeoDigest(t testing.TB, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// A real client (skopeo) pulls through the cache: the first pull fetches
// every blob from the upstream once, the second is served from the cache
// without the upstream hearing of it, and once the upstream is down and
// the tag's TTL is over, the cached tag is still served, marked stale.
func TestSkopeoPullThroughThenFromCacheThenUpstreamDown(t *testing.T) {
	e := newEnv(t)
	sk := registrytest.NewSkopeo(t)
	ctx := context.Background()
	img := registrytest.RandomImage(t, 300<<10, 3)
	e.pushUpstream("team/app:v1", img)
	want := registrytest.Digest(t, img)
	src := "docker://" + e.host + "/" + upstreamName + "/team/app:v1"

	dir1 := filepath.Join(t.TempDir(), "1")
	if out, err := sk.Copy(ctx, src, "dir:"+dir1, "nimbus:acme-ci"); err != nil {
		t.Fatal(err, out)
	}
	if got := skopeoDigest(t, dir1); got != want {
		t.Fatalf("pulled %s, pushed %s", got, want)
	}
	if n := e.front.BlobGets(); n != 4 { // config and three layers
		t.Errorf("first pull: %d upstream blob GETs, want 4", n)
	}
	e.front.Reset()

	dir2 := filepath.Join(t.TempDir(), "2")
	if out, err := sk.Copy(ctx, src, "dir:"+dir2, "nimbus:acme-ci"); err != nil {
		t.Fatal(err, out)
	}
	if got := skopeoDigest(t, dir2); got != want {
		t.Fatalf("second pull %s, want %s", got, want)
	}
	if n := e.front.Requests("GET blob") + e.front.Requests("GET manifest") + e.front.Requests("HEAD manifest"); n != 0 {
		t.Errorf("second pull reached the upstream %d times", n)
	}

	// Past the TTL the tag is revalidated with a HEAD, not fetched again.
	e.clock.Advance(2 * time.Minute)
	resp, _ := e.do("GET", "/v2/"+upstreamName+"/team/app/manifests/v1", "acme-ci", nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Nimbus-Cache") != cacheRevalidated {
		t.Fatalf("after the TTL: %d %q", resp.StatusCode, resp.Header.Get("X-Nimbus-Cache"))
	}
	if e.front.Requests("HEAD manifest") != 1 || e.front.Requests("GET manifest") != 0 {
		t.Errorf("revalidation: %d HEAD, %d GET", e.front.Requests("HEAD manifest"), e.front.Requests("GET manifest"))
	}

	// Upstream gone: stale-if-error, saying so.
	e.front.Close()
	e.clock.Advance(2 * time.Minute)
	resp, _ = e.do("GET", "/v2/"+upstreamName+"/team/app/manifests/v1", "acme-ci", nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Nimbus-Cache") != cacheStale || !strings.HasPrefix(resp.Header.Get("Warning"), "110 ") {
		t.Fatalf("upstream down: %d %q %q", resp.StatusCode, resp.Header.Get("X-Nimbus-Cache"), resp.Header.Get("Warning"))
	}
	dir3 := filepath.Join(t.TempDir(), "3")
	if out, err := sk.Copy(ctx, src, "dir:"+dir3, "nimbus:acme-ci"); err != nil {
		t.Fatal(err, out)
	}
	if got := skopeoDigest(t, dir3); got != want {
		t.Fatalf("pull with the upstream down: %s, want %s", got, want)
	}
	// A tag never pulled is an error, as a registry writes it.
	resp, b := e.do("GET", "/v2/"+upstreamName+"/team/app/manifests/v2", "acme-ci", nil)
	if resp.StatusCode != http.StatusBadGateway || ociCode(t, resp, b) != codeUnavailable {
		t.Errorf("uncached tag, upstream down: %d %s", resp.StatusCode, b)
	}
}

// Docker's registry-mirrors sends Docker Hub names unprefixed, official
// images under library/; a Docker Hub-style upstream takes one-component
// names under library/.
func TestMirrorAddressing(t *testing.T) {
	yes := true
	e := newEnv(t, withConfig(func(c *Config) {
		c.Upstreams = []UpstreamConfig{{Name: "hub.test", URL: "http://127.0.0.1:1", Library: &yes}}
	}))
	img := registrytest.RandomImage(t, 1024, 1)
	e.pushUpstream("library/alpine:3", img)
	want := registrytest.Digest(t, img)
	for _, path := range []string{"/v2/library/alpine/manifests/3", "/v2/" + upstreamName + "/library/alpine/manifests/3"} {
		resp, b := e.do("GET", path, "acme-viewer", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	p, err := e.reg.resolve(context.Background(), orgAcme, "hub.test/alpine")
	if err != nil || p.Remote != "library/alpine" || p.Policy != "hub.test/library/alpine" {
		t.Errorf("library: %+v %v", p, err)
	}
}

// A multi-platform index and its images pull through (skopeo --all).
func TestSkopeoPullIndex(t *testing.T) {
	e := newEnv(t)
	sk := registrytest.NewSkopeo(t)
	idx := registrytest.RandomIndex(t, 2048, 2, 3)
	e.pushUpstream("multi/arch:1", idx)
	dir := t.TempDir()
	out, err := sk.Copy(context.Background(), "docker://"+e.host+"/"+upstreamName+"/multi/arch:1", "dir:"+dir, "nimbus:acme-ci")
	if err != nil {
		t.Fatal(err, out)
	}
	// skopeo copies one platform by default; the index itself must have
	// been served untouched.
	resp, b := e.do("GET", "/v2/"+upstreamName+"/multi/arch/manifests/1", "acme-ci", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != registrytest.Digest(t, idx) {
		t.Fatalf("index: %d %s", resp.StatusCode, b)
	}
	var m struct {
		Manifests []json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(b, &m) != nil || len(m.Manifests) != 3 {
		t.Errorf("index body %s", b)
	}
}
