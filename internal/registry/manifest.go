package registry

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"
)

// Media types of the manifests the registry stores and serves. They are
// never converted: a manifest's digest is its bytes'.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// manifestAccept is what the registry asks upstreams for: every manifest
// type it serves.
var manifestAccept = []string{MediaTypeOCIIndex, MediaTypeDockerList, MediaTypeOCIManifest, MediaTypeDockerManifest}

// Limits on manifests (distribution refuses manifests over 4 MiB too).
const (
	maxManifestSize    = 4 << 20
	maxManifestEntries = 10000
)

// Descriptor points at content by digest.
type Descriptor struct {
	MediaType string
	Digest    Digest
	Size      int64
}

// Manifest is a parsed image manifest or index: what the registry needs
// of it (its type and what it references), never re-encoded.
type Manifest struct {
	MediaType string
	// Blobs are the config and layers of an image manifest.
	Blobs []Descriptor
	// Manifests are the entries of an index.
	Manifests []Descriptor
	// Subject is the manifest this one refers to (OCI 1.1), if any.
	Subject *Descriptor
	// Annotations of the manifest (cosign keeps signatures in its
	// layers' annotations, which Layers keeps).
	Annotations map[string]string
	// Layers are the image manifest's layers with their annotations.
	Layers []Layer
}

// Layer is an image manifest's layer with its annotations.
type Layer struct {
	Descriptor
	Annotations map[string]string
}

// IsIndex reports whether m lists other manifests.
func (m Manifest) IsIndex() bool {
	return m.MediaType == MediaTypeOCIIndex || m.MediaType == MediaTypeDockerList
}

type wireDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        *int64            `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

type wireManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        *wireDescriptor   `json:"config"`
	Layers        []wireDescriptor  `json:"layers"`
	Manifests     []wireDescriptor  `json:"manifests"`
	Subject       *wireDescriptor   `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// ParseManifest parses a manifest's bytes. contentType is the type the
// client or upstream declared (may be empty); when the body names its own
// mediaType, the two must agree. Without either, the type is inferred
// from the fields (an index has "manifests", an image "config"), as OCI
// 1.0 manifests may omit mediaType. Docker schema 1 is refused.
func ParseManifest(b []byte, contentType string) (Manifest, error) {
	if len(b) > maxManifestSize {
		return Manifest{}, fmt.Errorf("%w: %d bytes, at most %d", errBadManifest, len(b), maxManifestSize)
	}
	var w wireManifest
	if err := json.Unmarshal(b, &w); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", errBadManifest, clipErr(err))
	}
	if w.SchemaVersion == nil || *w.SchemaVersion != 2 {
		return Manifest{}, fmt.Errorf("%w: schemaVersion must be 2 (Docker schema 1 is not supported)", errBadManifest)
	}
	ct := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err == nil {
			ct = mt
		}
	}
	mt := w.MediaType
	switch {
	case mt != "" && ct != "" && ct != mt && knownManifestType(ct):
		return Manifest{}, fmt.Errorf("%w: body says %q, Content-Type %q", errBadManifest, clip(mt), clip(ct))
	case mt == "" && knownManifestType(ct):
		mt = ct
	case mt == "" && w.Manifests != nil && w.Config == nil:
		mt = MediaTypeOCIIndex
	case mt == "" && w.Config != nil && w.Manifests == nil:
		mt = MediaTypeOCIManifest
	}
	if !knownManifestType(mt) {
		return Manifest{}, fmt.Errorf("%w: media type %q is not a manifest type this registry serves", errBadManifest, clip(mt))
	}
	m := Manifest{MediaType: mt, Annotations: w.Annotations}
	desc := func(what string, d *wireDescriptor) (Descriptor, error) {
		dg, err := ParseDigest(d.Digest)
		if err != nil {
			return Descriptor{}, fmt.Errorf("%w: %s: %v", errBadManifest, what, err)
		}
		if d.Size == nil || *d.Size < 0 {
			return Descriptor{}, fmt.Errorf("%w: %s: size missing or negative", errBadManifest, what)
		}
		if d.MediaType == "" || len(d.MediaType) > 255 {
			return Descriptor{}, fmt.Errorf("%w: %s: mediaType missing or too long", errBadManifest, what)
		}
		return Descriptor{MediaType: d.MediaType, Digest: dg, Size: *d.Size}, nil
	}
	if len(w.Layers)+len(w.Manifests) > maxManifestEntries {
		return Manifest{}, fmt.Errorf("%w: more than %d entries", errBadManifest, maxManifestEntries)
	}
	if m.IsIndex() {
		if w.Config != nil || w.Layers != nil {
			return Manifest{}, fmt.Errorf("%w: an index has no config or layers", errBadManifest)
		}
		for i := range w.Manifests {
			d, err := desc(fmt.Sprintf("manifests[%d]", i), &w.Manifests[i])
			if err != nil {
				return Manifest{}, err
			}
			m.Manifests = append(m.Manifests, d)
		}
	} else {
		if w.Config == nil || w.Manifests != nil {
			return Manifest{}, fmt.Errorf("%w: an image manifest has a config and no manifests", errBadManifest)
		}
		d, err := desc("config", w.Config)
		if err != nil {
			return Manifest{}, err
		}
		m.Blobs = append(m.Blobs, d)
		for i := range w.Layers {
			d, err := desc(fmt.Sprintf("layers[%d]", i), &w.Layers[i])
			if err != nil {
				return Manifest{}, err
			}
			m.Blobs = append(m.Blobs, d)
			m.Layers = append(m.Layers, Layer{Descriptor: d, Annotations: w.Layers[i].Annotations})
		}
	}
	if w.Subject != nil {
		d, err := desc("subject", w.Subject)
		if err != nil {
			return Manifest{}, err
		}
		m.Subject = &d
	}
	return m, nil
}

func knownManifestType(t string) bool {
	switch t {
	case MediaTypeOCIManifest, MediaTypeOCIIndex, MediaTypeDockerManifest, MediaTypeDockerList:
		return true
	}
	return false
}

// accepts reports whether an Accept header (all of the request's values)
// admits manifest type t: it does unless it lists manifest types and t is
// not among them (nor */*). A client that names no manifest type at all
// gets what there is; the registry never converts a manifest.
func accepts(values []string, t string) bool {
	listed := false
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if mt == t || mt == "*/*" {
				return true
			}
			listed = listed || knownManifestType(mt)
		}
	}
	return !listed
}

func clipErr(err error) string { return clip(err.Error()) }
