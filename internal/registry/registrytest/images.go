package registrytest

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RandomImage builds an image of layers random layers of about size
// bytes each (valid gzipped tars).
func RandomImage(t testing.TB, size, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// RandomIndex builds a multi-platform index of count random images.
func RandomIndex(t testing.TB, size, layers, count int64) v1.ImageIndex {
	t.Helper()
	idx, err := random.Index(size, layers, count)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// Ref parses an image reference on a plain-HTTP registry.
func Ref(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Push writes img to ref (host/repo:tag) with rt (and opts, e.g. Basic).
func Push(t testing.TB, ref string, img v1.Image, rt http.RoundTripper, opts ...remote.Option) {
	t.Helper()
	if err := remote.Write(Ref(t, ref), img, append(opts, remote.WithTransport(rt))...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// PushIndex writes idx and its images to ref.
func PushIndex(t testing.TB, ref string, idx v1.ImageIndex, rt http.RoundTripper, opts ...remote.Option) {
	t.Helper()
	if err := remote.WriteIndex(Ref(t, ref), idx, append(opts, remote.WithTransport(rt))...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// Basic is a go-containerregistry authenticator with a username and a
// password (a Nimbus token): it does the registry's token dance as
// crane and docker do.
func Basic(token string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: "nimbus", Password: token})
}

// Digest returns img's manifest digest.
func Digest(t testing.TB, img interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// DigestBytes returns the sha256 digest of b, as a registry writes it.
func DigestBytes(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}
