package registry

import (
	"fmt"
	"strings"
)

// Endpoint is what a /v2/ path addresses, as the route table names it.
type Endpoint string

// The endpoints of the OCI Distribution API that Nimbus serves, and the
// token endpoint of the Docker registry token protocol.
const (
	EndpointBase      Endpoint = "base"      // /v2/
	EndpointToken     Endpoint = "token"     // /v2/token
	EndpointCatalog   Endpoint = "catalog"   // /v2/_catalog
	EndpointManifest  Endpoint = "manifest"  // /v2/<name>/manifests/<reference>
	EndpointBlob      Endpoint = "blob"      // /v2/<name>/blobs/<digest>
	EndpointUploads   Endpoint = "uploads"   // /v2/<name>/blobs/uploads/
	EndpointUpload    Endpoint = "upload"    // /v2/<name>/blobs/uploads/<id>
	EndpointTags      Endpoint = "tags"      // /v2/<name>/tags/list
	EndpointReferrers Endpoint = "referrers" // /v2/<name>/referrers/<digest>
)

// Target is a parsed /v2/ path.
type Target struct {
	Endpoint Endpoint
	// Name is the repository as the client wrote it (valid grammar).
	Name string
	// Ref is the manifest reference (manifest), Digest the blob's or the
	// subject's (blob, referrers), Upload the upload session's id.
	Ref    Reference
	Digest Digest
	Upload string
}

// PathPrefix is where the registry is served.
const PathPrefix = "/v2/"

// ParsePath parses the decoded path of a request under /v2/. Names are
// checked against the spec's grammar, so no accepted path carries "..",
// an empty component or anything else a store could misread; the store
// never sees a name anyway (its keys are hashes).
func ParsePath(p string) (Target, error) {
	rest, ok := strings.CutPrefix(p, PathPrefix)
	if !ok {
		return Target{}, fmt.Errorf("%w: path %q is not under %s", errNameUnknown, clip(p), PathPrefix)
	}
	switch rest {
	case "":
		return Target{Endpoint: EndpointBase}, nil
	case "token":
		return Target{Endpoint: EndpointToken}, nil
	case "_catalog":
		return Target{Endpoint: EndpointCatalog}, nil
	}
	if len(rest) > maxNameLen+256 {
		return Target{}, fmt.Errorf("%w: path too long", errBadName)
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	// Read from the right: the name is everything before the endpoint's
	// fixed segments, so a name may itself contain "blobs" or "manifests".
	var t Target
	var nameEnd int
	switch {
	case n >= 3 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		t.Endpoint, nameEnd = EndpointUpload, n-3
		if segs[n-1] == "" {
			t.Endpoint = EndpointUploads
		} else if !validUploadID(segs[n-1]) {
			return Target{}, fmt.Errorf("%w: upload id %q", errUploadUnknown, clip(segs[n-1]))
		} else {
			t.Upload = segs[n-1]
		}
	case n >= 2 && segs[n-2] == "manifests":
		t.Endpoint, nameEnd = EndpointManifest, n-2
		ref, err := ParseReference(segs[n-1])
		if err != nil {
			return Target{}, err
		}
		t.Ref = ref
	case n >= 2 && (segs[n-2] == "blobs" || segs[n-2] == "referrers"):
		t.Endpoint, nameEnd = EndpointBlob, n-2
		if segs[n-2] == "referrers" {
			t.Endpoint = EndpointReferrers
		}
		d, err := ParseDigest(segs[n-1])
		if err != nil {
			return Target{}, err
		}
		t.Digest = d
	case n >= 2 && segs[n-2] == "tags" && segs[n-1] == "list":
		t.Endpoint, nameEnd = EndpointTags, n-2
	default:
		return Target{}, fmt.Errorf("%w: no registry endpoint at %q", errNoRoute, clip(p))
	}
	name := strings.Join(segs[:nameEnd], "/")
	if !ValidName(name) {
		return Target{}, fmt.Errorf("%w: %q", errBadName, clip(name))
	}
	t.Name = name
	return t, nil
}

// validUploadID: the ids this registry makes (26 lowercase base32
// characters, see newUploadID).
func validUploadID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(uploadIDAlphabet, rune(s[i])) {
			return false
		}
	}
	return true
}
