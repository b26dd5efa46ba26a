package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// cosignSignature builds the signature image cosign would push for the
// manifest digest d, signed with key: an OCI image whose one layer is
// the simple-signing payload, with the ECDSA signature (ASN.1, base64) in
// the layer's annotation.
func cosignSignature(t *testing.T, key *ecdsa.PrivateKey, ref, d string) v1.Image {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": ref},
			"image":    map[string]string{"docker-manifest-digest": d},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(payload, cosignSimpleSigning),
		Annotations: map[string]string{cosignSignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
		MediaType:   cosignSimpleSigning,
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func newKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(f, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return k, f
}

func sigTag(d string) string { return "sha256-" + strings.TrimPrefix(d, "sha256:") + ".sig" }

// An org that requires signatures pulls only images signed with its
// keys (cosign's simple-signing format, keys the test makes); an image
// without a signature, signed by another key, or whose signature names
// another digest is refused with a registry error. Repositories outside
// the policy, and other orgs, are unaffected; a signed index vouches for
// the images it lists.
func TestRequiredSignatures(t *testing.T) {
	key, pub := newKey(t)
	other, _ := newKey(t)
	e := newEnv(t, withConfig(func(c *Config) {
		c.Orgs = map[string]OrgPolicy{orgAcme: {Signatures: &SignaturePolicy{Keys: []string{pub}, Repositories: []string{upstreamName + "/signed/**"}}}}
	}))
	push := func(repo string) string {
		img := registrytest.RandomImage(t, 1024, 1)
		e.pushUpstream(repo+":1", img)
		return registrytest.Digest(t, img)
	}
	good := push("signed/good")
	e.pushUpstream("signed/good:"+sigTag(good), cosignSignature(t, key, "x/signed/good", good))
	unsigned := push("signed/unsigned")
	wrongKey := push("signed/wrongkey")
	e.pushUpstream("signed/wrongkey:"+sigTag(wrongKey), cosignSignature(t, other, "x", wrongKey))
	wrongDigest := push("signed/wrongdigest")
	e.pushUpstream("signed/wrongdigest:"+sigTag(wrongDigest), cosignSignature(t, key, "x", good))
	free := push("team/free")

	get := func(tok, repo, ref string) (*http.Response, []byte) {
		return e.do("GET", "/v2/"+upstreamName+"/"+repo+"/manifests/"+ref, tok, nil)
	}
	if resp, b := get("acme-ci", "signed/good", "1"); resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != good {
		t.Errorf("signed image: %d %s", resp.StatusCode, b)
	}
	for repo, d := range map[string]string{"signed/unsigned": unsigned, "signed/wrongkey": wrongKey, "signed/wrongdigest": wrongDigest} {
		for _, ref := range []string{"1", d} {
			resp, b := get("acme-ci", repo, ref)
			if resp.StatusCode != 403 || ociCode(t, resp, b) != codeDenied || !strings.Contains(string(b), "signature") {
				t.Errorf("%s@%s: %d %s", repo, ref, resp.StatusCode, b)
			}
		}
	}
	if resp, b := get("acme-ci", "team/free", "1"); resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != free {
		t.Errorf("outside the policy: %d %s", resp.StatusCode, b)
	}
	if resp, b := get("globex-ci", "signed/unsigned", "1"); resp.StatusCode != 200 {
		t.Errorf("another org without the policy: %d %s", resp.StatusCode, b)
	}
	// A signed index: the index and, through it, its images.
	idx := registrytest.RandomIndex(t, 1024, 1, 2)
	e.pushUpstream("signed/multi:1", idx)
	id := registrytest.Digest(t, idx)
	e.pushUpstream("signed/multi:"+sigTag(id), cosignSignature(t, key, "x", id))
	if resp, b := get("acme-ci", "signed/multi", "1"); resp.StatusCode != 200 {
		t.Fatalf("signed index: %d %s", resp.StatusCode, b)
	}
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		if resp, b := get("acme-ci", "signed/multi", m.Digest.String()); resp.StatusCode != 200 {
			t.Errorf("image of a signed index: %d %s", resp.StatusCode, b)
		}
	}
}
