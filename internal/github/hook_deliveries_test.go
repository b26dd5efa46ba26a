package github_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

// receiver stands in for Nimbus's webhook endpoint: it answers 503 while
// down and records the GUIDs it took.
type receiver struct {
	down atomic.Bool
	mu   sync.Mutex
	got  map[string]int
	// refuseAll answers 400 (a delivery Nimbus rejects).
	refuseAll atomic.Bool
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	guid := req.Header.Get("X-GitHub-Delivery")
	if r.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if r.refuseAll.Load() {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[guid]++
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) seen(_ context.Context, guid string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[guid] > 0, nil
}

func (r *receiver) count(guid string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[guid]
}

// Deliveries that failed while the receiver was down are redelivered once
// it is back (across pages of the deliveries list); those that succeeded,
// other events, and deliveries the receiver keeps refusing (after three
// attempts) are not.
func TestRedelivererRecoversFailedDeliveries(t *testing.T) {
	f := newFixture(t, githubtest.Config{}, nil)
	ctx := testContext(t)
	rec := &receiver{got: map[string]int{}}
	hook := httptest.NewServer(rec)
	defer hook.Close()
	f.srv.SetHook(hook.URL, []byte("secret"))
	job := func(id int64) []byte {
		return githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{JobID: id})
	}

	// Some deliveries land; then the receiver is down for a while.
	var ok []string
	for i := range 150 { // more than a page of 100
		ok = append(ok, f.srv.SendHook(ctx, "workflow_job", job(int64(1000+i))).GUID)
	}
	rec.down.Store(true)
	var lost []string
	for i := range 3 {
		lost = append(lost, f.srv.SendHook(ctx, "workflow_job", job(int64(2000+i))).GUID)
	}
	otherEvent := f.srv.SendHook(ctx, "push", []byte(`{"ref":"refs/heads/main"}`)).GUID
	rec.down.Store(false)
	// One more that lands, after the lost ones (they are not the newest).
	ok = append(ok, f.srv.SendHook(ctx, "workflow_job", job(3000)).GUID)

	r := &github.Redeliverer{App: f.app, Seen: rec.seen, Now: f.clock.Now}
	n, err := r.Round(ctx)
	if err != nil || n != len(lost) {
		t.Fatalf("round: asked for %d (%v), want %d", n, err, len(lost))
	}
	waitFor(t, "the lost deliveries to arrive", func() bool {
		for _, g := range lost {
			if rec.count(g) != 1 {
				return false
			}
		}
		return true
	})
	for _, g := range ok {
		if rec.count(g) != 1 {
			t.Errorf("delivery %s that had landed arrived %d times", g, rec.count(g))
		}
	}
	if rec.count(otherEvent) != 0 {
		t.Errorf("a push delivery was redelivered")
	}
	// Nothing is left to redeliver.
	if n, err := r.Round(ctx); err != nil || n != 0 {
		t.Fatalf("second round: asked for %d (%v), want 0", n, err)
	}

	// A delivery the receiver refuses is tried three times in all.
	rec.refuseAll.Store(true)
	bad := f.srv.SendHook(ctx, "workflow_job", job(4000)).GUID
	for want := 2; want <= 3; want++ {
		if n, err := r.Round(ctx); err != nil || n != 1 {
			t.Fatalf("round for attempt %d: asked for %d (%v), want 1", want, n, err)
		}
		waitFor(t, "the redelivery attempt", func() bool { return attempts(f.srv, bad) == want })
	}
	if n, err := r.Round(ctx); err != nil || n != 0 {
		t.Fatalf("after three attempts: asked for %d (%v), want 0", n, err)
	}
}

// attempts counts the emulator's recorded attempts for a GUID.
func attempts(srv *githubtest.Server, guid string) int {
	n := 0
	for _, d := range srv.HookDeliveries() {
		if d.GUID == guid {
			n++
		}
	}
	return n
}
