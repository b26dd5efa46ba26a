package s3

import (
	"strings"
	"testing"
)

// FuzzParseList: whatever the service answers, the listing parser returns
// an error or a page, never panics, and a truncated page has a token.
func FuzzParseList(f *testing.F) {
	f.Add(`<ListBucketResult><Contents><Key>a/cas/00</Key><Size>3</Size><LastModified>2026-01-01T00:00:00Z</LastModified></Contents><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken></ListBucketResult>`)
	f.Add(`<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>`)
	f.Add(`<Error><Code>NoSuchBucket</Code></Error>`)
	f.Fuzz(func(t *testing.T, doc string) {
		l, err := parseList(strings.NewReader(doc))
		if err == nil && l.IsTruncated && l.NextContinuationToken == "" {
			t.Fatal("truncated page without a token accepted")
		}
		parseError(strings.NewReader(doc))
	})
}

// FuzzParseKey: only keys the store could have written parse, and they
// round-trip.
func FuzzParseKey(f *testing.F) {
	s := &Store{opts: Options{Prefix: "p/"}}
	f.Add("p/0123456789abcdef0123456789abcdef/cas/" + strings.Repeat("ab", 32))
	f.Add("p/../cas/x")
	f.Fuzz(func(t *testing.T, k string) {
		dir, key, ok := s.parseKey(k)
		if !ok {
			return
		}
		if got := s.key(dir, key.kind, &key.hash); got != k {
			t.Fatalf("parseKey(%q) round-trips to %q", k, got)
		}
	})
}
