package cache_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/cache"
)

func actionsDo(t *testing.T, method, u string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// saveV1 saves content under key through the Actions cache v1 API and
// returns the signed download URL the lookup answers.
func saveV1(t *testing.T, base, key string, content []byte) string {
	t.Helper()
	api := base + "/actions-cache/_apis/artifactcache/"
	h := func() http.Header {
		return http.Header{"Authorization": {"Bearer " + tokJobA}, "Content-Type": {"application/json"}}
	}
	resp, body := actionsDo(t, "POST", api+"caches", h(), []byte(`{"key":"`+key+`","version":"v1"}`))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("reserve: %s %s", resp.Status, body)
	}
	var res struct{ CacheID int64 }
	json.Unmarshal(body, &res)
	id := api + "caches/" + jsonNumber(res.CacheID)
	ch := h()
	ch.Set("Content-Type", "application/octet-stream")
	ch.Set("Content-Range", "bytes 0-"+jsonNumber(int64(len(content)-1))+"/*")
	if resp, body := actionsDo(t, "PATCH", id, ch, content); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upload: %s %s", resp.Status, body)
	}
	if resp, body := actionsDo(t, "POST", id, h(), []byte(`{"size":`+jsonNumber(int64(len(content)))+`}`)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("commit: %s %s", resp.Status, body)
	}
	resp, body = actionsDo(t, "GET", api+"cache?keys="+key+"&version=v1", h(), nil)
	var hit struct{ ArchiveLocation string }
	if err := json.Unmarshal(body, &hit); err != nil || hit.ArchiveLocation == "" {
		t.Fatalf("lookup: %s %s", resp.Status, body)
	}
	return hit.ArchiveLocation
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }

// onHost points a signed URL at another server.
func onHost(t *testing.T, signed, base string) string {
	u, err := url.Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := url.Parse(base)
	u.Host = b.Host
	return u.String()
}

// TestActionsSigningKey: with a configured key, a signed download URL
// works after a restart and on another replica; without one (a random key
// per process) it does not.
func TestActionsSigningKey(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	content := []byte("archive bytes")
	for _, tc := range []struct {
		name string
		key  []byte
		want int
	}{{"configured", key, http.StatusOK}, {"random", nil, http.StatusNotFound}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			a := startEnv(t, cache.Config{Dir: dir, ActionsSigningKey: tc.key})
			signed := saveV1(t, a.httpURL, "deps-"+tc.name, content)
			if resp, body := actionsDo(t, "GET", signed, http.Header{}, nil); resp.StatusCode != http.StatusOK || !bytes.Equal(body, content) {
				t.Fatalf("download from the signing replica: %s", resp.Status)
			}
			// Another replica over the same storage (what a restart sees).
			b := startEnv(t, cache.Config{Dir: dir + "-b", ActionsSigningKey: tc.key})
			saveV1(t, b.httpURL, "deps-"+tc.name, content) // the blob exists there too
			resp, body := actionsDo(t, "GET", onHost(t, signed, b.httpURL), http.Header{}, nil)
			if resp.StatusCode != tc.want {
				t.Fatalf("download on another replica: %s %s, want %d", resp.Status, body, tc.want)
			}
		})
	}
	if _, err := cache.New(cache.Config{Dir: t.TempDir(), ActionsSigningKey: []byte("short")}, nil, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "actions_signing_key") {
		t.Errorf("short key: %v, want an error naming actions_signing_key", err)
	}
}
