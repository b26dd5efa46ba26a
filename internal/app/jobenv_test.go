package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
)

// A leased job gets a credential scoped to itself and the build cache: it
// reads and writes its org's cache and nothing else.
func TestLeasedJobGetsACacheCredential(t *testing.T) {
	ctx := context.Background()
	h := apptest.Start(t, "sqlite")
	var en apiv1.Enrolled
	if _, err := h.Client(h.JoinToken("linux")).Do(ctx, "POST", apiv1.PathAgentEnroll, apiv1.Enroll{Name: "a", MaxJobs: 1}, &en); err != nil {
		t.Fatal(err)
	}
	id := submit(t, h, "true")
	var l apiv1.Lease
	if code, err := h.Client(en.Credential).Do(ctx, "POST", apiv1.PathAgentLease, apiv1.LeaseRequest{WaitSeconds: 5}, &l); err != nil || code != 200 {
		t.Fatalf("lease: %d %v", code, err)
	}
	if l.Job.ID != id {
		t.Fatalf("leased %s", l.Job.ID)
	}
	tok := l.Env["ACTIONS_RUNTIME_TOKEN"]
	if tok == "" || !strings.HasPrefix(l.Env["NIMBUS_CACHE_URL"], "grpc://127.0.0.1:") || !strings.HasPrefix(l.Env["ACTIONS_CACHE_URL"], h.URL) {
		t.Fatalf("lease env: %v", l.Env)
	}
	blob := []byte("cached by a job")
	sum := sha256.Sum256(blob)
	url := h.URL + "/cache/cas/" + hex.EncodeToString(sum[:])
	do := func(method, token string, body []byte) int {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := do("PUT", tok, blob); got/100 != 2 {
		t.Fatalf("job PUT: %d", got)
	}
	if got := do("GET", tok, nil); got != 200 {
		t.Errorf("job GET: %d", got)
	}
	// The same blob is invisible to another org.
	var other apiv1.CreatedOrg
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/orgs", apiv1.CreateOrg{Name: "other"}, &other); err != nil {
		t.Fatal(err)
	}
	if got := do("GET", other.AdminToken.Secret, nil); got != 404 {
		t.Errorf("other org GET: %d, want 404", got)
	}
	// The job credential is no API token.
	if _, err := h.Client(tok).Do(ctx, "GET", "/api/v1/jobs", nil, nil); !apiclient.IsStatus(err, http.StatusForbidden) {
		t.Errorf("job credential on the API: %v, want 403", err)
	}
}
