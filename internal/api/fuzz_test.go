package api_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

// serve sends a request straight to the handler (no sockets: fast enough
// to fuzz).
func serve(h *apptest.Harness, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.CP.API.ServeHTTP(rec, req)
	return rec
}

// No delivery, however malformed, makes the webhook endpoint fail (5xx)
// or panic. Signed deliveries reach the parser and the state machine.
func FuzzWebhook(f *testing.F) {
	h := apptest.Start(f, "sqlite")
	secret := []byte(h.WebhookSecret)
	for _, a := range []string{"queued", "in_progress", "completed", "waiting"} {
		f.Add("workflow_job", "d-"+a, githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: a, InstallationID: 1}), true)
	}
	f.Add("ping", "p", githubtest.PingPayload(1, 2), true)
	f.Add("workflow_job", "x", []byte(`{"action":"queued","workflow_job":{"id":-1}}`), true)
	f.Add("workflow_job", "", []byte(`{}`), false)
	f.Fuzz(func(t *testing.T, event, delivery string, body []byte, sign bool) {
		var key []byte
		if sign {
			key = secret
		}
		req := httptest.NewRequest("POST", "/webhooks/github", bytes.NewReader(body))
		for k, v := range githubtest.DeliveryHeaders(key, event, delivery, body) {
			req.Header[k] = v
		}
		rec := serve(h, req)
		if rec.Code >= 500 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if !sign && rec.Code != http.StatusUnauthorized {
			t.Fatalf("unsigned delivery answered %d", rec.Code)
		}
	})
}

// No request body makes the job submission endpoint fail or panic; what it
// accepts is a valid job.
func FuzzSubmitJob(f *testing.F) {
	h := apptest.Start(f, "sqlite")
	for _, s := range []string{
		`{"argv":["echo","hi"]}`,
		`{"argv":["sh","-c","exit 3"],"env":{"A":"b"},"labels":["linux"],"timeout_seconds":60}`,
		`{"argv":[""]}`, `{"argv":["x"],"env":{"1A":"b"}}`, `{"argv":["x"],"timeout_seconds":-1}`,
		`{"argv":["x"],"idempotency_key":"k"}`, `[]`, `null`, `{"argv":["x"]} {}`, "{\"argv\":[\"\x00\"]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/api/v1/jobs", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+h.OwnerToken)
		req.Header.Set("Content-Type", "application/json")
		rec := serve(h, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("%d %s for %q", rec.Code, rec.Body, body)
		case rec.Code < 300 && !bytes.Contains(rec.Body.Bytes(), []byte(`"state":"queued"`)):
			t.Fatalf("accepted %q as %s", body, rec.Body)
		case rec.Code >= 400 && !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)):
			t.Fatalf("%d without a JSON error: %s", rec.Code, rec.Body)
		}
	})
}

// The agent API's decoders: no body makes them fail or panic.
func FuzzAgentAPI(f *testing.F) {
	h := apptest.Start(f, "sqlite")
	f.Add(0, []byte(`{"fence":1,"chunks":[{"seq":0,"data":"aGk="}]}`))
	f.Add(1, []byte(`{"fence":1,"state":"succeeded","exit_code":0}`))
	f.Add(2, []byte(`{"leases":[{"job_id":"job_x","fence":1}],"wait_seconds":0}`))
	f.Add(3, []byte(`{"wait_seconds":0}`))
	f.Add(4, []byte(`{"name":"a","labels":["x"],"max_jobs":1}`))
	paths := []string{"/api/v1/agent/jobs/job_06h0dyqz9mwb7tq6w3dgedhcjr/logs", "/api/v1/agent/jobs/job_06h0dyqz9mwb7tq6w3dgedhcjr/complete",
		"/api/v1/agent/sync", "/api/v1/agent/lease", "/api/v1/agent/enroll"}
	f.Fuzz(func(t *testing.T, which int, body []byte) {
		if which < 0 {
			which = -which
		}
		req := httptest.NewRequest("POST", paths[which%len(paths)], bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer nmbj_notarealtoken")
		rec := serve(h, req)
		if rec.Code >= 500 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
}

// GET /api/v1/insights's query: any query string is a report or a 400
// with a JSON error, never a 5xx.
func FuzzInsightsQuery(f *testing.F) {
	h := apptest.Start(f, "sqlite")
	for _, q := range []string{"", "since=7d", "since=2026-01-01T00:00:00Z&until=1h", "repo=acme/web&jobs=10&lines=0",
		"since=93d", "jobs=-1", "lines=x", "repo=%ff", "since=0d", "until=2099-01-01T00:00:00Z", "since=99999999d"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		req, err := http.NewRequest("GET", "/api/v1/insights", nil)
		if err != nil {
			t.Skip()
		}
		req.URL.RawQuery = q
		req.RequestURI = req.URL.RequestURI()
		req.Header.Set("Authorization", "Bearer "+h.OwnerToken)
		rec := serve(h, req)
		switch {
		case rec.Code >= 500:
			t.Fatalf("%d %s for %q", rec.Code, rec.Body, q)
		case rec.Code < 300 && !bytes.Contains(rec.Body.Bytes(), []byte(`"groups":`)):
			t.Fatalf("%q answered %s", q, rec.Body)
		case rec.Code >= 400 && !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)):
			t.Fatalf("%d without a JSON error: %s", rec.Code, rec.Body)
		}
	})
}
