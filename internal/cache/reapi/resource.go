package reapi

import (
	"fmt"
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Resource is a parsed ByteStream resource name.
type Resource struct {
	Instance string
	UUID     string // uploads only
	Digest   blobstore.Digest
	// Compressed: the bytes on the wire are the blob compressed with zstd
	// ("compressed-blobs/zstd/…"); Digest is still the uncompressed blob's.
	Compressed bool
}

// ParseReadResource parses "{instance}/blobs/{hash}/{size}" or
// "{instance}/compressed-blobs/zstd/{hash}/{size}" (the instance may be
// empty or have several segments).
func ParseReadResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	for i := 0; i < len(segs); i++ {
		switch {
		case segs[i] == "blobs" && i+3 == len(segs):
			return resourceAt(segs, i, 0, "")
		case segs[i] == "compressed-blobs" && i+4 == len(segs):
			return resourceAt(segs, i, 0, "")
		}
	}
	return Resource{}, fmt.Errorf("%w: resource %q: want {instance}/blobs/{hash}/{size} or {instance}/compressed-blobs/zstd/{hash}/{size}", blobstore.ErrInvalid, trunc(name))
}

// ParseWriteResource parses "{instance}/uploads/{uuid}/blobs/{hash}/{size}"
// or "{instance}/uploads/{uuid}/compressed-blobs/zstd/{hash}/{size}",
// optionally followed by further segments (which the API allows and this
// server ignores).
func ParseWriteResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	for i := 0; i+2 < len(segs); i++ {
		if segs[i] != "uploads" || segs[i+1] == "" || len(segs[i+1]) > 128 {
			continue
		}
		switch {
		case segs[i+2] == "blobs" && i+5 <= len(segs):
			return resourceAt(segs, i+2, i, segs[i+1])
		case segs[i+2] == "compressed-blobs" && i+6 <= len(segs):
			return resourceAt(segs, i+2, i, segs[i+1])
		}
	}
	return Resource{}, fmt.Errorf("%w: resource %q: want {instance}/uploads/{uuid}/blobs/{hash}/{size} or …/compressed-blobs/zstd/{hash}/{size}", blobstore.ErrInvalid, trunc(name))
}

// resourceAt parses the digest after segs[i] ("blobs" or
// "compressed-blobs"); the instance is what precedes segs[inst] (the
// "uploads" of a write, else segs[i]).
func resourceAt(segs []string, i, inst int, uuid string) (Resource, error) {
	r := Resource{UUID: uuid}
	if uuid == "" {
		inst = i
	}
	r.Instance = strings.Join(segs[:inst], "/")
	j := i + 1
	if segs[i] == "compressed-blobs" {
		if segs[j] != "zstd" {
			return Resource{}, fmt.Errorf("%w: compressor %q is not supported (Capabilities lists zstd)", blobstore.ErrInvalid, trunc(segs[j]))
		}
		r.Compressed = true
		j++
	}
	h, err := blobstore.ParseHash(segs[j])
	if err != nil {
		return Resource{}, err
	}
	size, err := blobstore.ParseSize(segs[j+1])
	if err != nil {
		return Resource{}, err
	}
	r.Digest = blobstore.Digest{Hash: h, Size: size}
	return r, nil
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
