package actionscache

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		h       string
		off, n  int64
		wantErr bool
	}{
		{"bytes=0-99", 0, 100, false},
		{"bytes=10-", 10, 990, false},
		{"bytes=-10", 990, 10, false},
		{"bytes=900-5000", 900, 100, false},
		{"bytes=1000-", 0, 0, true},
		{"bytes=5-4", 0, 0, true},
		{"bytes=0-1,3-4", 0, 0, true},
		{"bytes=+1-2", 0, 0, true},
		{"items=0-1", 0, 0, true},
	}
	for _, tc := range tests {
		off, n, err := parseRange(tc.h, 1000)
		if (err != nil) != tc.wantErr || off != tc.off || n != tc.n {
			t.Errorf("parseRange(%q) = %d, %d, %v", tc.h, off, n, err)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-99", "bytes=-5", "bytes=7-", "bytes=99999999999999999999-"} {
		f.Add(s, int64(1000))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size <= 0 {
			return
		}
		off, n, err := parseRange(h, size)
		if err != nil {
			if !errors.Is(err, blobstore.ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if off < 0 || n <= 0 || off+n > size {
			t.Fatalf("parseRange(%q, %d) = %d, %d outside the blob", h, size, off, n)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-33554431/*")
	f.Add("bytes 5-4/*")
	f.Fuzz(func(t *testing.T, h string) {
		s, e, err := parseContentRange(h)
		if err == nil && (s < 0 || e < s) {
			t.Fatalf("parseContentRange(%q) = %d, %d", h, s, e)
		}
	})
}

// FuzzTwirpBody feeds arbitrary bodies to the Twirp request decoder: a
// clear error or a request, never a panic.
func FuzzTwirpBody(f *testing.F) {
	f.Add([]byte(`{"key":"k","restore_keys":["a"],"version":"v"}`))
	f.Add([]byte(`{"key":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, TwirpPrefix+"GetCacheEntryDownloadURL", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req downloadReq
		if err := decodeTwirp(r, &req); err != nil && !errors.Is(err, blobstore.ErrInvalid) {
			t.Fatalf("error %v is not ErrInvalid", err)
		}
	})
}

func TestParseBlockList(t *testing.T) {
	ids, err := parseBlockList(bytes.NewReader([]byte(`<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>AAA=</Latest><Uncommitted> BBB= </Uncommitted><Committed>AAA=</Committed></BlockList>`)))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"AAA=", "BBB=", "AAA="}; len(ids) != len(want) || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] {
		t.Errorf("ids = %q, want %q", ids, want)
	}
	if _, err := parseBlockList(bytes.NewReader([]byte("<BlockList><Latest>"))); !errors.Is(err, blobstore.ErrInvalid) {
		t.Errorf("truncated list: %v, want ErrInvalid", err)
	}
}

// FuzzParseBlockList: any Put Block List body yields ids or ErrInvalid.
func FuzzParseBlockList(f *testing.F) {
	f.Add([]byte(`<BlockList><Latest>AAA=</Latest></BlockList>`))
	f.Add([]byte(`<BlockList><Latest><x/></Latest>`))
	f.Add([]byte(`<!DOCTYPE a [<!ENTITY b "c">]><BlockList><Latest>&b;</Latest></BlockList>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := parseBlockList(bytes.NewReader(b))
		if err != nil && !errors.Is(err, blobstore.ErrInvalid) {
			t.Fatalf("error %v is not ErrInvalid", err)
		}
		for _, id := range ids {
			if len(id) > len(b) {
				t.Fatalf("id %q longer than the body", id)
			}
		}
	})
}
