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
}

// ParseReadResource parses "{instance}/blobs/{hash}/{size}" (the instance
// may be empty or have several segments).
func ParseReadResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	for i := 0; i+2 < len(segs); i++ {
		if segs[i] != "blobs" {
			continue
		}
		if i+3 != len(segs) {
			break
		}
		return resourceAt(segs, i, "")
	}
	if i := index(segs, "compressed-blobs"); i >= 0 {
		return Resource{}, fmt.Errorf("%w: resource %q: compressed blobs are not supported (Capabilities lists no compressor)", blobstore.ErrInvalid, trunc(name))
	}
	return Resource{}, fmt.Errorf("%w: resource %q: want {instance}/blobs/{hash}/{size}", blobstore.ErrInvalid, trunc(name))
}

// ParseWriteResource parses "{instance}/uploads/{uuid}/blobs/{hash}/{size}"
// optionally followed by further segments (which the API allows and this
// server ignores).
func ParseWriteResource(name string) (Resource, error) {
	segs := strings.Split(name, "/")
	for i := 0; i+4 < len(segs); i++ {
		if segs[i] != "uploads" || segs[i+2] != "blobs" {
			continue
		}
		if segs[i+1] == "" || len(segs[i+1]) > 128 {
			break
		}
		return resourceAt(segs, i+2, segs[i+1])
	}
	if index(segs, "compressed-blobs") >= 0 {
		return Resource{}, fmt.Errorf("%w: resource %q: compressed blobs are not supported (Capabilities lists no compressor)", blobstore.ErrInvalid, trunc(name))
	}
	return Resource{}, fmt.Errorf("%w: resource %q: want {instance}/uploads/{uuid}/blobs/{hash}/{size}", blobstore.ErrInvalid, trunc(name))
}

func resourceAt(segs []string, i int, uuid string) (Resource, error) {
	h, err := blobstore.ParseHash(segs[i+1])
	if err != nil {
		return Resource{}, err
	}
	size, err := blobstore.ParseSize(segs[i+2])
	if err != nil {
		return Resource{}, err
	}
	inst := strings.Join(segs[:max(0, i-boolInt(uuid != "")*2)], "/")
	return Resource{Instance: inst, UUID: uuid, Digest: blobstore.Digest{Hash: h, Size: size}}, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func index(segs []string, s string) int {
	for i, x := range segs {
		if x == s {
			return i
		}
	}
	return -1
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
