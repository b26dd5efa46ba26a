package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// tagList is the body of GET /v2/<name>/tags/list.
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// maxTagPage bounds one page of tags.
const maxTagPage = 10000

// listTags lists an own repository's tags (sorted, paginated with n and
// last), or forwards the question to the upstream of a pulled-through one
// (the answer is not cached: it is the upstream's list now).
func (r *Registry) listTags(w http.ResponseWriter, req *http.Request, c *call) error {
	q := req.URL.Query()
	n := maxTagPage
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return ociError(http.StatusBadRequest, codeUnsupported, "n: %q: a non-negative number", clip(s))
		}
		n = min(v, maxTagPage)
	}
	last := q.Get("last")
	if last != "" && !ValidTag(last) {
		return ociError(http.StatusBadRequest, codeUnsupported, "last: %q is not a tag", clip(last))
	}
	if c.repo.Up != nil {
		return r.upstreamTags(w, req, c, n, last)
	}
	tags, err := r.tags.list(req.Context(), c.repo)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return fmt.Errorf("%w: %s", errNameUnknown, c.t.Name)
	}
	if last != "" {
		i, found := slices.BinarySearch(tags, last)
		if found {
			i++
		}
		tags = tags[i:]
	}
	if len(tags) > n {
		tags = tags[:n]
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[len(tags)-1]}}
		w.Header().Set("Link", fmt.Sprintf(`<%s%s/tags/list?%s>; rel="next"`, PathPrefix, c.t.Name, next.Encode()))
	}
	return writeTags(w, c.t.Name, tags)
}

func writeTags(w http.ResponseWriter, name string, tags []string) error {
	if tags == nil {
		tags = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(tagList{Name: name, Tags: tags})
}

func (r *Registry) upstreamTags(w http.ResponseWriter, req *http.Request, c *call, n int, last string) error {
	ctx := req.Context()
	cr, err := r.creds.forRequest(ctx, c.repo.Org, c.repo.Up)
	if err != nil {
		return err
	}
	v := url.Values{}
	if req.URL.Query().Has("n") {
		v.Set("n", strconv.Itoa(n))
	}
	if last != "" {
		v.Set("last", last)
	}
	path := "tags/list"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	resp, err := c.repo.Up.do(ctx, cr, http.MethodGet, c.repo.Remote, path, nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s", errNameUnknown, c.t.Name)
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(c.repo.Up, resp, c.repo.Policy)
	}
	var tl tagList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTagListSize)).Decode(&tl); err != nil {
		return fmt.Errorf("%w: %s: tag list: %v", errUpstream, c.repo.Up.cfg.Name, err)
	}
	tags := tl.Tags[:0]
	for _, t := range tl.Tags {
		if ValidTag(t) {
			tags = append(tags, t)
		}
	}
	if link := resp.Header.Get("Link"); link != "" && len(tags) > 0 {
		next := url.Values{"last": {tags[len(tags)-1]}}
		if req.URL.Query().Has("n") {
			next.Set("n", strconv.Itoa(n))
		}
		w.Header().Set("Link", fmt.Sprintf(`<%s%s/tags/list?%s>; rel="next"`, PathPrefix, c.t.Name, next.Encode()))
	}
	return writeTags(w, c.t.Name, tags)
}
