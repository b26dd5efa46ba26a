package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/app/apptest"
)

// Errors keep the shape each endpoint's clients parse: the API's
// {"error": {"code", "message"}}, and the remote Bazel proxy's
// {"error": "…"} from the edge on.
func TestErrorShapes(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	for _, tc := range []struct {
		method, path, token string
		status              int
		want                func(map[string]any) bool
	}{
		{"GET", "/api/v1/jobs/job_nosuch", h.OwnerToken, 404, func(m map[string]any) bool {
			e, ok := m["error"].(map[string]any)
			return ok && e["code"] == "not_found" && e["message"] != ""
		}},
		{"GET", "/api/v1/nosuch", "", 404, func(m map[string]any) bool { _, ok := m["error"].(map[string]any); return ok }},
		{"POST", "/api/v1/rbs/sessions:get", "", 401, func(m map[string]any) bool { s, ok := m["error"].(string); return ok && s != "" }},
		{"POST", "/api/v1/rbs/sessions:get", h.OwnerToken, 400, func(m map[string]any) bool { s, ok := m["error"].(string); return ok && s != "" }},
	} {
		req, _ := http.NewRequest(tc.method, h.URL+tc.path, strings.NewReader("{"))
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m map[string]any
		if resp.StatusCode != tc.status || json.Unmarshal(b, &m) != nil || !tc.want(m) {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, resp.StatusCode, b)
		}
	}
}
