package registry

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// What cosign writes (its "simple signing" format, signatures stored as
// an image under the tag sha256-<hex>.sig of the signed repository).
const (
	cosignSimpleSigning       = "application/vnd.dev.cosign.simplesigning.v1+json"
	cosignSignatureAnnotation = "dev.cosignproject.cosign/signature"
	maxSignaturePayload       = 64 << 10
	maxSignatureLayers        = 64
)

// signatures remembers which manifests were verified for which org, for
// the tag TTL: a pull reads a manifest several times (HEAD, GET, the
// index then its children), and a verified index vouches for the
// manifests it lists.
type signatures struct {
	now func() time.Time

	mu sync.Mutex
	ok map[sigKey]time.Time // until when
}

type sigKey struct {
	org  string
	hash blobstore.Hash
}

// maxVerified bounds the memory of verified digests; past it, it is
// cleared (they are verified again).
const maxVerified = 100000

func newSignatures(now func() time.Time) *signatures {
	return &signatures{now: now, ok: map[sigKey]time.Time{}}
}

func (s *signatures) verified(org string, d Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	until, ok := s.ok[sigKey{org, d.Hash}]
	return ok && s.now().Before(until)
}

func (s *signatures) remember(org string, ttl time.Duration, ds ...Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ok)+len(ds) > maxVerified {
		clear(s.ok)
	}
	for _, d := range ds {
		s.ok[sigKey{org, d.Hash}] = s.now().Add(ttl)
	}
}

// checkSignature enforces the org's signature policy on a manifest about
// to be served: when the repository is covered, the manifest (or an index
// verified before that lists it) must carry a cosign signature from one
// of the policy's keys, whose payload names this manifest's digest.
func (r *Registry) checkSignature(ctx context.Context, p repo, mb manifestBody) error {
	pol := r.cfg.policy(p.Org).Signatures
	if pol == nil {
		return nil
	}
	if p.Up == nil && !pol.Own || p.Up != nil && !matchAny(pol.Repositories, p.Policy, true) {
		return nil
	}
	if isSignatureManifest(mb.m) || r.sigs.verified(p.Org, mb.digest) {
		return nil
	}
	if err := r.verifyCosign(ctx, p, mb.digest, pol); err != nil {
		r.log.Warn("pull refused: signature", "org", p.Org, "repository", p.Policy, "digest", mb.digest.String(), "err", err)
		return fmt.Errorf("%w: %s@%s: the org requires a cosign signature from its keys: %v", errSignature, p.Name, mb.digest, err)
	}
	verified := []Digest{mb.digest}
	for _, d := range mb.m.Manifests {
		verified = append(verified, d.Digest)
	}
	r.sigs.remember(p.Org, r.cfg.TagTTL, verified...)
	return nil
}

// isSignatureManifest: a cosign signature image (its own pulls are not
// subject to the policy, or checking would never end).
func isSignatureManifest(m Manifest) bool {
	if len(m.Layers) == 0 {
		return false
	}
	for _, l := range m.Layers {
		if l.MediaType != cosignSimpleSigning {
			return false
		}
	}
	return true
}

// signatureTag is where cosign stores the signatures of digest d.
func signatureTag(d Digest) string { return "sha256-" + d.Hash.String() + ".sig" }

func (r *Registry) verifyCosign(ctx context.Context, p repo, d Digest, pol *SignaturePolicy) error {
	sm, err := r.manifest(ctx, p, Reference{Tag: signatureTag(d)})
	if errors.Is(err, errManifestUnknown) || errors.Is(err, errUpstreamDenied) {
		return fmt.Errorf("no signature (%s:%s)", p.Name, signatureTag(d))
	}
	if err != nil {
		return fmt.Errorf("read signatures: %w", err)
	}
	var reasons []string
	for i, l := range sm.m.Layers {
		if i >= maxSignatureLayers {
			break
		}
		if l.MediaType != cosignSimpleSigning {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[cosignSignatureAnnotation])
		if err != nil || len(sig) == 0 {
			reasons = append(reasons, "a signature layer without a signature annotation")
			continue
		}
		if l.Size > maxSignaturePayload {
			reasons = append(reasons, "a signature payload too large")
			continue
		}
		pl, err := r.blobBytes(ctx, p, l.Digest, maxSignaturePayload)
		if err != nil {
			reasons = append(reasons, "payload: "+err.Error())
			continue
		}
		if err := verifyPayload(pol.keys, sig, pl, d); err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		return nil
	}
	if len(reasons) == 0 {
		return errors.New("no cosign signature layer")
	}
	return errors.New(strings.Join(reasons, "; "))
}

// verifyPayload checks one simple-signing signature: a key verifies it,
// and the payload is a cosign container image signature of digest d.
func verifyPayload(keys []crypto.PublicKey, sig, pl []byte, d Digest) error {
	verified := false
	for _, k := range keys {
		v, err := signature.LoadVerifier(k, crypto.SHA256)
		if err != nil {
			continue
		}
		if v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pl)) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return errors.New("no configured key verifies the signature")
	}
	var sci payload.SimpleContainerImage
	if err := json.Unmarshal(pl, &sci); err != nil {
		return fmt.Errorf("signed payload: %v", clipErr(err))
	}
	if sci.Critical.Type != payload.CosignSignatureType {
		return fmt.Errorf("signed payload of type %q", clip(sci.Critical.Type))
	}
	if sci.Critical.Image.DockerManifestDigest != d.String() {
		return fmt.Errorf("the signature is for %s", clip(sci.Critical.Image.DockerManifestDigest))
	}
	return nil
}

// blobBytes reads a small blob of p: from the org's store, else through
// the blob's flight (verified, and then kept).
func (r *Registry) blobBytes(ctx context.Context, p repo, d Digest, max int64) ([]byte, error) {
	b, err := blobstore.GetBytes(ctx, r.store, d.ref(p.Org), max)
	if err == nil {
		if digestOf(b) != d {
			return nil, fmt.Errorf("stored blob %s does not hash to its digest", d)
		}
		return b, nil
	}
	if !errors.Is(err, blobstore.ErrNotFound) || p.Up == nil {
		return nil, err
	}
	cr, err := r.creds.forRequest(ctx, p.Org, p.Up)
	if err != nil {
		return nil, err
	}
	f, err := r.flights.join(p, cr, d)
	if err != nil {
		return nil, err
	}
	defer f.release()
	if _, err := f.wait(ctx); err != nil {
		return nil, err
	}
	size, err := f.waitDone(ctx)
	if err != nil {
		return nil, err
	}
	if size > max {
		return nil, fmt.Errorf("%w: %d bytes", blobstore.ErrTooLarge, size)
	}
	return io.ReadAll(f.reader(ctx, 0, size))
}

// loadPublicKey reads a PEM public key file.
func loadPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return k, nil
}
