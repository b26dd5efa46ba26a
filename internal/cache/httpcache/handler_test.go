package httpcache

import (
	"errors"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

func FuzzParsePath(f *testing.F) {
	f.Add("cas/" + blobstore.EmptyDigest.Hash.String())
	f.Add("ac/../../x")
	f.Fuzz(func(t *testing.T, p string) {
		k, h, err := ParsePath(p)
		if err != nil {
			if !errors.Is(err, blobstore.ErrInvalid) && !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("error %v is neither ErrInvalid nor ErrNotFound", err)
			}
			return
		}
		if !k.Valid() || !strings.HasSuffix(p, "/"+h.String()) {
			t.Fatalf("ParsePath(%q) = %v, %s", p, k, h)
		}
	})
}
