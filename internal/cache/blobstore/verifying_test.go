package blobstore

import (
	"context"
	"errors"
	"testing"
)

// TestVerifyingChecksRefs: what no backend checks any more is refused in
// front of them, on every call.
func TestVerifyingChecksRefs(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	v := NewVerifying(m)
	good := DigestOf([]byte("x"))
	bad := []Ref{
		{Org: "", Kind: KindCAS, Digest: good},
		{Org: "o", Kind: 0, Digest: good},
		{Org: "o", Kind: Kind(200), Digest: good},
	}
	for _, ref := range bad {
		if _, _, err := v.Get(ctx, ref, 0, 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(%+v) = %v, want ErrInvalid", ref, err)
		}
		if _, err := v.FindMissing(ctx, ref.Org, ref.Kind, []Digest{good}); !errors.Is(err, ErrInvalid) {
			t.Errorf("FindMissing(%+v) = %v, want ErrInvalid", ref, err)
		}
		if _, err := v.NewWriter(ctx, ref, 1); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewWriter(%+v) = %v, want ErrInvalid", ref, err)
		}
	}
	ref := Ref{Org: "o", Kind: KindCAS, Digest: good}
	if err := PutBytes(ctx, v, ref, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int64{{-1, 0}, {0, -1}} {
		if _, _, err := v.Get(ctx, ref, r[0], r[1]); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(offset %d, limit %d) = %v, want ErrInvalid", r[0], r[1], err)
		}
	}
	for _, size := range []int64{-1, 2} {
		if _, err := v.NewWriter(ctx, ref, size); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewWriter(size %d) = %v, want ErrInvalid", size, err)
		}
	}
	// Action cache keys name no content: any size, no hash check.
	ac := Ref{Org: "o", Kind: KindAC, Digest: good}
	if err := PutBytes(ctx, v, ac, []byte("any value")); err != nil {
		t.Errorf("AC write: %v", err)
	}
	if m.Len() != 2 {
		t.Errorf("memory holds %d blobs, want 2", m.Len())
	}
}
