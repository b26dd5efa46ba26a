package github

import (
	"net/url"
	"testing"
)

// FuzzNextCursor: a Link header from the API yields the cursor of its
// rel="next" URL, or "", and never panics.
func FuzzNextCursor(f *testing.F) {
	f.Add(`<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967>; rel="next"`)
	f.Add(`<https://api.github.com/x?cursor=a%20b>; rel="prev", <https://api.github.com/x?cursor=c>; rel="next"`)
	f.Add(`<%zz>; rel="next"`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, link string) {
		c := nextCursor(link)
		if c == "" {
			return
		}
		// What it returns came from a parsable next URL's query.
		m := linkNext.FindStringSubmatch(link)
		if m == nil {
			t.Fatalf("cursor %q from a header without a next link", c)
		}
		u, err := url.Parse(m[1])
		if err != nil || u.Query().Get("cursor") != c {
			t.Fatalf("cursor %q does not come from %q", c, m[1])
		}
	})
}
