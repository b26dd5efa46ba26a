package github_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

// TestDeliveryOverHTTP sends real deliveries through net/http (which
// canonicalises header names) to a handler that verifies them the way the
// control plane will.
func TestDeliveryOverHTTP(t *testing.T) {
	secret := []byte("webhook-secret")
	type result struct {
		d   github.Delivery
		ev  github.WorkflowJobEvent
		err error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var res result
		defer func() { results <- res }()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 25<<20))
		if err != nil {
			res.err = err
			return
		}
		if res.d, res.err = github.DeliveryFromHeaders(r.Header); res.err != nil {
			return
		}
		if res.err = github.VerifySignature(body, r.Header.Get(github.SignatureHeader), [][]byte{secret}); res.err != nil {
			return
		}
		res.ev, res.err = github.ParseWorkflowJob(body)
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 42})
	const id = "72d3162e-cc78-11e3-81ab-4c9367dc0958"

	send := func(secret []byte) result {
		t.Helper()
		resp, err := githubtest.Deliver(ctx, srv.Client(), srv.URL, secret, "workflow_job", id, body)
		if err != nil {
			t.Fatalf("Deliver: %v", err)
		}
		resp.Body.Close()
		return <-results
	}

	res := send(secret)
	if res.err != nil {
		t.Fatalf("verify delivery: %v", res.err)
	}
	want := github.Delivery{
		ID: id, Event: "workflow_job", HookID: githubtest.DefaultHookID,
		TargetType: githubtest.DefaultTargetType, TargetID: githubtest.DefaultTargetID,
	}
	if diff := cmp.Diff(want, res.d); diff != "" {
		t.Errorf("Delivery mismatch (-want +got):\n%s", diff)
	}
	if res.ev.Job.ID != 29679449 || res.ev.InstallationID != 42 {
		t.Errorf("parsed job %d installation %d, want 29679449 and 42", res.ev.Job.ID, res.ev.InstallationID)
	}

	if res := send([]byte("wrong")); !errors.Is(res.err, github.ErrBadSignature) {
		t.Errorf("delivery signed with the wrong secret: err = %v, want ErrBadSignature", res.err)
	}
	if res := send(nil); !errors.Is(res.err, github.ErrMissingSignature) {
		t.Errorf("unsigned delivery: err = %v, want ErrMissingSignature", res.err)
	}
}

func TestDeliveryFromHeaders(t *testing.T) {
	base := func() http.Header {
		return githubtest.DeliveryHeaders([]byte("s"), "workflow_job", "72d3162e-cc78-11e3-81ab-4c9367dc0958", nil)
	}
	for _, tc := range []struct {
		name    string
		mutate  func(h http.Header)
		want    github.Delivery
		wantErr string // a substring; "" means success
	}{
		{
			name:   "github's headers",
			mutate: func(http.Header) {},
			want: github.Delivery{ID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Event: "workflow_job",
				HookID: "469785313", TargetType: "integration", TargetID: "123456"},
		},
		{
			name: "optional headers absent",
			mutate: func(h http.Header) {
				h.Del(github.HeaderHookID)
				h.Del(github.HeaderTargetType)
				h.Del(github.HeaderTargetID)
			},
			want: github.Delivery{ID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Event: "workflow_job"},
		},
		{"delivery id missing", func(h http.Header) { h.Del(github.HeaderDelivery) }, github.Delivery{}, "X-GitHub-Delivery is missing"},
		{"delivery id empty", func(h http.Header) { h.Set(github.HeaderDelivery, "") }, github.Delivery{}, "X-GitHub-Delivery is missing"},
		{"event missing", func(h http.Header) { h.Del(github.HeaderEvent) }, github.Delivery{}, "X-GitHub-Event is missing"},
		{"delivery id too long", func(h http.Header) { h.Set(github.HeaderDelivery, strings.Repeat("a", 65)) }, github.Delivery{}, "X-GitHub-Delivery is 65 bytes long"},
		{"delivery id with slash", func(h http.Header) { h.Set(github.HeaderDelivery, "../etc") }, github.Delivery{}, "X-GitHub-Delivery has an invalid character at offset 0"},
		{"delivery id with newline", func(h http.Header) { h.Set(github.HeaderDelivery, "ab\ncd") }, github.Delivery{}, "X-GitHub-Delivery has an invalid character at offset 2"},
		{"delivery id twice", func(h http.Header) { h.Add(github.HeaderDelivery, "other") }, github.Delivery{}, "X-GitHub-Delivery is given 2 times"},
		{"event upper case", func(h http.Header) { h.Set(github.HeaderEvent, "Workflow_Job") }, github.Delivery{}, "X-GitHub-Event has an invalid character at offset 0"},
		{"event with space", func(h http.Header) { h.Set(github.HeaderEvent, "workflow job") }, github.Delivery{}, "X-GitHub-Event has an invalid character at offset 8"},
		{"event too long", func(h http.Header) { h.Set(github.HeaderEvent, strings.Repeat("e", 65)) }, github.Delivery{}, "X-GitHub-Event is 65 bytes long"},
		{"hook id not decimal", func(h http.Header) { h.Set(github.HeaderHookID, "12a") }, github.Delivery{}, "X-GitHub-Hook-ID has an invalid character at offset 2"},
		{"hook id negative", func(h http.Header) { h.Set(github.HeaderHookID, "-1") }, github.Delivery{}, "X-GitHub-Hook-ID has an invalid character at offset 0"},
		{"hook id too long", func(h http.Header) { h.Set(github.HeaderHookID, strings.Repeat("9", 21)) }, github.Delivery{}, "X-GitHub-Hook-ID is 21 bytes long"},
		{"target type odd", func(h http.Header) { h.Set(github.HeaderTargetType, "repo/sitory") }, github.Delivery{}, "X-GitHub-Hook-Installation-Target-Type has an invalid character"},
		{"target id twice", func(h http.Header) { h.Add(github.HeaderTargetID, "2") }, github.Delivery{}, "X-GitHub-Hook-Installation-Target-ID is given 2 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := base()
			tc.mutate(h)
			got, err := github.DeliveryFromHeaders(h)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, github.ErrInvalidDelivery) {
					t.Fatalf("DeliveryFromHeaders = %+v, %v; want an ErrInvalidDelivery containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DeliveryFromHeaders: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Delivery mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzDeliveryFromHeaders(f *testing.F) {
	f.Add("72d3162e-cc78-11e3-81ab-4c9367dc0958", "workflow_job", "469785313", "integration", "123456")
	f.Add("", "ping", "", "", "")
	f.Add("x", "", "1", "repository", "99999999999999999999")
	f.Add("a\x00b", "ev\r\nX-Evil: 1", "1 2", "ORG", "-5")
	f.Fuzz(func(t *testing.T, id, event, hookID, targetType, targetID string) {
		h := http.Header{}
		for name, v := range map[string]string{
			github.HeaderDelivery: id, github.HeaderEvent: event, github.HeaderHookID: hookID,
			github.HeaderTargetType: targetType, github.HeaderTargetID: targetID,
		} {
			if v != "" {
				h.Set(name, v)
			}
		}
		d, err := github.DeliveryFromHeaders(h)
		if err != nil {
			if !errors.Is(err, github.ErrInvalidDelivery) {
				t.Fatalf("error %v does not wrap ErrInvalidDelivery", err)
			}
			return
		}
		want := github.Delivery{ID: id, Event: event, HookID: hookID, TargetType: targetType, TargetID: targetID}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Fatalf("accepted delivery differs from its headers (-want +got):\n%s", diff)
		}
		if d.ID == "" || d.Event == "" || len(d.ID) > 64 || len(d.Event) > 64 {
			t.Fatalf("accepted delivery without a bounded id and event: %+v", d)
		}
		for _, v := range []string{d.ID, d.Event, d.HookID, d.TargetType, d.TargetID} {
			if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r > '~' || r == '/' }) {
				t.Fatalf("accepted header value %q with a space, control, slash or non-ASCII character", v)
			}
		}
	})
}
