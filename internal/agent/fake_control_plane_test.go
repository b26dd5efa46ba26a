package agent

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// fakeControlPlane is a small working implementation of the agent side of
// the control plane's API (docs/api.md), in memory: one-time join tokens,
// expiring credentials, a queue of jobs leased with fences that only grow,
// lease expiry and requeueing, long polls that answer 204 when empty,
// cancellation through sync, 409 stale_fence and finished, log chunks
// stored once per (fence, seq), and exactly-once completion. It also
// records what the tests check (calls, completions, violations of the
// agent's duties) and injects faults.
type fakeControlPlane struct {
	leaseTTL time.Duration
	credTTL  time.Duration

	mu         sync.Mutex
	joinTokens map[string]*fakeJoinToken
	creds      map[string]*fakeCredential
	agents     map[string]*fakeAgent
	jobs       map[string]*fakeJob
	queue      []string // ids of queued jobs, oldest first
	nextID     int
	changed    chan struct{} // closed and replaced at every change
	closed     bool
	down       bool
	faults     map[string][]fault // by operation
	calls      map[string]int     // by operation
	lastBearer string             // credential of the last authenticated call
	leasePolls int                // lease requests being served
	// logsGate, when set, holds every logs call until it is closed.
	logsGate chan struct{}
	// jsonOnly: logs uploads in the binary form are answered 415, as a
	// server older than apiv1.ContentTypeLogs answers them.
	jsonOnly bool
	// logsTypes counts logs uploads by Content-Type.
	logsTypes  map[string]int
	violations []string
}

type fakeJoinToken struct {
	labels []string
	used   bool
}

type fakeCredential struct {
	agentID string
	expires time.Time
}

type fakeAgent struct {
	id       string
	allowed  []string
	labels   []string
	maxJobs  int
	disabled bool
	enrolls  int
	// registered counts registrations.
	registered int
}

// fakeJob is a job and its current lease.
type fakeJob struct {
	job      apiv1.Job
	runner   *apiv1.RunnerLease
	leaseEnv map[string]string
	// leased, running or one of the final states; queued when unleased.
	state   string
	agent   string
	expires time.Time
	// fence of the current (or last) lease; it only grows.
	fence           int64
	cancelRequested bool
	// logs by fence, then by seq.
	logs      map[int64]map[int64][]byte
	completes []apiv1.Complete // applied completions (all fences)
}

// fault is an answer forced on one call of an operation.
type fault struct {
	status int
	// applied: the call takes effect, but its answer is lost.
	applied bool
}

func newFakeControlPlane(leaseTTL time.Duration) *fakeControlPlane {
	return &fakeControlPlane{
		leaseTTL:   leaseTTL,
		credTTL:    24 * time.Hour,
		joinTokens: map[string]*fakeJoinToken{},
		creds:      map[string]*fakeCredential{},
		agents:     map[string]*fakeAgent{},
		jobs:       map[string]*fakeJob{},
		changed:    make(chan struct{}),
		faults:     map[string][]fault{},
		calls:      map[string]int{},
		logsTypes:  map[string]int{},
	}
}

// serve starts an HTTP server on 127.0.0.1:0 for f and returns its URL.
func (f *fakeControlPlane) serve(t *testing.T) string {
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		f.close()
		srv.Close()
	})
	return srv.URL
}

// close ends every long poll.
func (f *fakeControlPlane) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	f.notifyLocked()
}

func (f *fakeControlPlane) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// --- what tests do

func (f *fakeControlPlane) joinToken(labels ...string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := "join-" + randomSecret()
	f.joinTokens[tok] = &fakeJoinToken{labels: labels}
	return tok
}

// fakeJobSpec is a job to enqueue.
type fakeJobSpec struct {
	argv     []string
	env      map[string]string
	timeout  int64
	labels   []string
	runner   *apiv1.RunnerLease
	leaseEnv map[string]string
}

func (f *fakeControlPlane) enqueue(spec fakeJobSpec) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	id := fmt.Sprintf("job-%d", f.nextID)
	labels := spec.labels
	if labels == nil {
		labels = []string{"linux"}
	}
	f.jobs[id] = &fakeJob{
		job: apiv1.Job{
			ID: id, Org: "org-1", Source: "api", State: "queued", Labels: labels,
			Argv: spec.argv, Env: spec.env, TimeoutSeconds: spec.timeout, MaxAttempts: 3,
			CreatedAt: time.Now(),
		},
		runner:   spec.runner,
		leaseEnv: spec.leaseEnv,
		state:    "queued",
		logs:     map[int64]map[int64][]byte{},
	}
	f.queue = append(f.queue, id)
	f.notifyLocked()
	return id
}

// cancel asks for a job's cancellation, as POST /api/v1/jobs/{id}/cancel.
func (f *fakeControlPlane) cancel(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	j.cancelRequested = true
	if j.state == "queued" {
		j.state = "cancelled"
		f.queue = slices.DeleteFunc(f.queue, func(q string) bool { return q == id })
	}
	f.notifyLocked()
}

// steal hands a job's lease to another agent, as the reaper and scheduler
// would after the lease expired: the fence moves on.
func (f *fakeControlPlane) steal(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	j.fence++
	j.agent = "agent-elsewhere"
	j.state = "leased"
	j.expires = time.Now().Add(time.Hour)
	f.notifyLocked()
}

func (f *fakeControlPlane) disable(agentID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.agents[agentID].disabled = true
	f.notifyLocked()
}

// setDown makes the server unreachable: every call fails at the transport.
func (f *fakeControlPlane) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	f.notifyLocked()
}

// failNext forces the answers of the next calls of op (enroll, refresh,
// register, lease, sync, start, logs, complete).
func (f *fakeControlPlane) failNext(op string, faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = append(f.faults[op], faults...)
}

// holdLogs makes logs calls wait until the returned func is called.
func (f *fakeControlPlane) holdLogs() (release func()) {
	gate := make(chan struct{})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logsGate = gate
	return sync.OnceFunc(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.logsGate = nil
		close(gate)
	})
}

// fakeJobView is a copy of a job's state.
type fakeJobView struct {
	State           string
	Agent           string
	Fence           int64
	Completes       []apiv1.Complete
	CancelRequested bool
}

func (f *fakeControlPlane) view(id string) fakeJobView {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.viewLocked(id)
}

func (f *fakeControlPlane) viewLocked(id string) fakeJobView {
	j := f.jobs[id]
	return fakeJobView{State: j.state, Agent: j.agent, Fence: j.fence, Completes: slices.Clone(j.completes), CancelRequested: j.cancelRequested}
}

// waitFor polls, at every change and with a deadline, until cond holds.
func (f *fakeControlPlane) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	// Conditions may also depend on state outside f (an executor's):
	// check again at least every few milliseconds.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
	}
}

// waitJob waits until the job's view satisfies cond and returns it.
func (f *fakeControlPlane) waitJob(t *testing.T, id, what string, cond func(fakeJobView) bool) fakeJobView {
	t.Helper()
	var v fakeJobView
	f.waitFor(t, id+" "+what, func() bool {
		v = f.view(id)
		return cond(v)
	})
	return v
}

func (f *fakeControlPlane) waitFinished(t *testing.T, id string) fakeJobView {
	t.Helper()
	return f.waitJob(t, id, "to finish", func(v fakeJobView) bool { return len(v.Completes) > 0 })
}

// output returns the job's log of one lease, and whether it has no gap.
func (f *fakeControlPlane) output(id string, fence int64) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	chunks := f.jobs[id].logs[fence]
	var b strings.Builder
	for seq := range int64(len(chunks)) {
		c, ok := chunks[seq]
		if !ok {
			return b.String(), false
		}
		b.Write(c)
	}
	return b.String(), true
}

func (f *fakeControlPlane) callCount(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeControlPlane) agentsCopy() map[string]fakeAgent {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]fakeAgent{}
	for id, a := range f.agents {
		out[id] = *a
	}
	return out
}

func (f *fakeControlPlane) checkNoViolations(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		t.Errorf("the agent broke the protocol: %s", v)
	}
}

func (f *fakeControlPlane) violate(format string, args ...any) {
	f.violations = append(f.violations, fmt.Sprintf(format, args...))
}

// --- the API

// apiError is an error answer.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func (f *fakeControlPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, jobID, ok := route(r)
	if !ok || r.Method != http.MethodPost {
		writeError(w, errorf(http.StatusNotFound, apiv1.CodeNotFound, "no such route %s %s", r.Method, r.URL.Path))
		return
	}
	f.mu.Lock()
	down, gate := f.down, f.logsGate
	f.calls[op]++
	var flt fault
	if q := f.faults[op]; len(q) > 0 {
		flt, f.faults[op] = q[0], q[1:]
	}
	f.mu.Unlock()
	if down {
		// The connection is dropped without an answer.
		panic(http.ErrAbortHandler)
	}
	if op == "logs" && gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if flt.status != 0 && !flt.applied {
		writeError(w, errorf(flt.status, apiv1.CodeInternal, "injected fault"))
		return
	}
	target := w
	if flt.applied {
		target = httptest.NewRecorder() // the answer is lost
	}
	answer, err := f.handle(r, op, jobID)
	switch {
	case flt.applied:
		writeError(w, errorf(flt.status, apiv1.CodeInternal, "injected fault after the call took effect"))
	case err != nil:
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = errorf(http.StatusInternalServerError, apiv1.CodeInternal, "%v", err)
		}
		writeError(target, ae)
	case answer == nil:
		target.WriteHeader(http.StatusNoContent)
	default:
		target.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(target).Encode(answer)
	}
}

// route names the operation of a request, and its job id for per-job ones.
func route(r *http.Request) (op, jobID string, ok bool) {
	switch p := r.URL.Path; p {
	case apiv1.PathAgentEnroll:
		return "enroll", "", true
	case apiv1.PathAgentRefresh:
		return "refresh", "", true
	case apiv1.PathAgentRegister:
		return "register", "", true
	case apiv1.PathAgentLease:
		return "lease", "", true
	case apiv1.PathAgentSync:
		return "sync", "", true
	default:
		rest, found := strings.CutPrefix(p, "/api/v1/agent/jobs/")
		if !found {
			return "", "", false
		}
		id, op, found := strings.Cut(rest, "/")
		if !found || id == "" || !slices.Contains([]string{"start", "logs", "complete"}, op) {
			return "", "", false
		}
		return op, id, true
	}
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(apiv1.Error{Error: apiv1.ErrorBody{Code: e.code, Message: e.msg}})
}

// decode reads a JSON body strictly, as the real server does.
func decode(r *http.Request, v any) error {
	d := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, apiv1.CodeTooLarge, "body too large")
		}
		return errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "body: %v", err)
	}
	return nil
}

// decodeLogs reads a logs upload, in JSON or in the binary form
// (apiv1.ContentTypeLogs), as the real server does; unless jsonOnly, when
// the binary form is answered 415, as an older server answers it.
func (f *fakeControlPlane) decodeLogs(r *http.Request, logs *apiv1.Logs) error {
	ct := r.Header.Get("Content-Type")
	f.mu.Lock()
	f.logsTypes[ct]++
	jsonOnly := f.jsonOnly
	f.mu.Unlock()
	if ct != apiv1.ContentTypeLogs {
		return decode(r, logs)
	}
	if jsonOnly {
		return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 8<<20))
	if err != nil {
		return errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "body: %v", err)
	}
	if *logs, err = apiv1.DecodeLogsBinary(body, 1<<20); err != nil {
		return errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "body: %v", err)
	}
	return nil
}

// logsUploads returns how many logs uploads came with each Content-Type.
func (f *fakeControlPlane) logsUploads() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.logsTypes)
}

func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok
}

// handle serves one call and returns its answer (nil for 204).
func (f *fakeControlPlane) handle(r *http.Request, op, jobID string) (any, error) {
	if op == "enroll" {
		return f.enroll(r)
	}
	ag, err := f.authenticate(r)
	if err != nil {
		return nil, err
	}
	switch op {
	case "refresh":
		return f.refresh(r, ag)
	case "register":
		return f.register(r, ag)
	case "lease":
		return f.lease(r, ag)
	case "sync":
		return f.sync(r, ag)
	default:
		return f.jobCall(r, ag, op, jobID)
	}
}

func (f *fakeControlPlane) authenticate(r *http.Request) (*fakeAgent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.creds[bearer(r)]
	if !ok || !time.Now().Before(c.expires) || f.agents[c.agentID].disabled {
		return nil, errorf(http.StatusUnauthorized, apiv1.CodeUnauthenticated, "invalid, expired or revoked credential")
	}
	f.lastBearer = bearer(r)
	return f.agents[c.agentID], nil
}

func (f *fakeControlPlane) issueLocked(ag *fakeAgent) apiv1.Enrolled {
	tok := "cred-" + randomSecret()
	exp := time.Now().Add(f.credTTL)
	f.creds[tok] = &fakeCredential{agentID: ag.id, expires: exp}
	return apiv1.Enrolled{AgentID: ag.id, Org: "org-1", Credential: tok, ExpiresAt: exp, AllowedLabels: ag.allowed}
}

func (f *fakeControlPlane) enroll(r *http.Request) (any, error) {
	var req apiv1.Enroll
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	jt, ok := f.joinTokens[bearer(r)]
	if !ok || jt.used {
		return nil, errorf(http.StatusUnauthorized, apiv1.CodeUnauthenticated, "invalid or used join token")
	}
	for _, l := range req.Labels {
		if !slices.Contains(jt.labels, l) {
			return nil, errorf(http.StatusForbidden, apiv1.CodeForbidden, "label %q not allowed", l)
		}
	}
	jt.used = true
	ag := &fakeAgent{id: fmt.Sprintf("agent-%d", len(f.agents)+1), allowed: jt.labels, labels: req.Labels, maxJobs: req.MaxJobs, enrolls: 1}
	f.agents[ag.id] = ag
	return f.issueLocked(ag), nil
}

func (f *fakeControlPlane) refresh(r *http.Request, ag *fakeAgent) (any, error) {
	var req struct{}
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issueLocked(ag), nil
}

func (f *fakeControlPlane) register(r *http.Request, ag *fakeAgent) (any, error) {
	var req apiv1.Register
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range req.Labels {
		if !slices.Contains(ag.allowed, l) {
			return nil, errorf(http.StatusForbidden, apiv1.CodeForbidden, "label %q not allowed", l)
		}
	}
	if req.MaxJobs < 1 {
		return nil, errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "max_jobs: must be at least 1")
	}
	ag.labels, ag.maxJobs = req.Labels, req.MaxJobs
	ag.registered++
	return nil, nil
}

// reapLocked requeues the jobs whose lease expired.
func (f *fakeControlPlane) reapLocked() {
	now := time.Now()
	for id, j := range f.jobs {
		if (j.state == "leased" || j.state == "running") && !now.Before(j.expires) {
			j.state, j.agent = "queued", ""
			j.job.Attempt++
			f.queue = append(f.queue, id)
		}
	}
}

// liveLocked counts the leases an agent holds.
func (f *fakeControlPlane) liveLocked(agentID string) int {
	n := 0
	for _, j := range f.jobs {
		if j.agent == agentID && (j.state == "leased" || j.state == "running") {
			n++
		}
	}
	return n
}

// longPoll calls step under the lock until it returns done, a change
// wakes it, the wait passes (it returns nil) or the request ends.
func (f *fakeControlPlane) longPoll(r *http.Request, wait time.Duration, step func(final bool) (answer any, done bool)) any {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	final := wait <= 0
	for {
		f.mu.Lock()
		if f.down {
			f.mu.Unlock()
			panic(http.ErrAbortHandler) // the connection drops
		}
		f.reapLocked()
		answer, done := step(final || f.closed)
		ch := f.changed
		f.mu.Unlock()
		if done || final {
			return answer
		}
		select {
		case <-ch:
		case <-deadline.C:
			final = true
		case <-r.Context().Done():
			return nil
		}
	}
}

func (f *fakeControlPlane) lease(r *http.Request, ag *fakeAgent) (any, error) {
	var req apiv1.LeaseRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.WaitSeconds < 0 || req.WaitSeconds > 60 {
		return nil, errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "wait_seconds: must be between 0 and 60")
	}
	f.mu.Lock()
	f.reapLocked()
	if n := f.liveLocked(ag.id); n >= ag.maxJobs {
		f.violate("lease requested while holding %d leases (max jobs %d)", n, ag.maxJobs)
	}
	if f.leasePolls > 0 {
		f.violate("two lease requests in flight at once")
	}
	f.leasePolls++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.leasePolls--
		f.notifyLocked()
		f.mu.Unlock()
	}()
	answer := f.longPoll(r, time.Duration(req.WaitSeconds)*time.Second, func(bool) (any, bool) {
		for i, id := range f.queue {
			j := f.jobs[id]
			if !subset(j.job.Labels, ag.labels) {
				continue
			}
			f.queue = slices.Delete(f.queue, i, i+1)
			j.fence++
			j.state, j.agent = "leased", ag.id
			j.expires = time.Now().Add(f.leaseTTL)
			job := j.job
			job.State, job.Fence, job.AgentID = "leased", j.fence, ag.id
			f.notifyLocked()
			return &apiv1.Lease{Job: job, Fence: j.fence, TTLSeconds: int64(f.leaseTTL / time.Second), Runner: j.runner, Env: maps.Clone(j.leaseEnv)}, true
		}
		return nil, false
	})
	if answer == nil {
		return nil, nil
	}
	return answer, nil
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func (f *fakeControlPlane) sync(r *http.Request, ag *fakeAgent) (any, error) {
	var req apiv1.Sync
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.WaitSeconds < 0 || req.WaitSeconds > 60 {
		return nil, errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "wait_seconds: must be between 0 and 60")
	}
	answer := f.longPoll(r, time.Duration(req.WaitSeconds)*time.Second, func(final bool) (any, bool) {
		out := &apiv1.Synced{Leases: []apiv1.LeaseStatus{}}
		allOK := true
		for _, ref := range req.Leases {
			st := apiv1.LeaseStatus{JobID: ref.JobID, Status: apiv1.LeaseLost}
			j, ok := f.jobs[ref.JobID]
			if ok && j.agent == ag.id && j.fence == ref.Fence && (j.state == "leased" || j.state == "running") {
				j.expires = time.Now().Add(f.leaseTTL)
				st.ExpiresAt = j.expires
				st.Status = apiv1.LeaseOK
				if j.cancelRequested {
					st.Status = apiv1.LeaseCancel
				}
			}
			allOK = allOK && st.Status == apiv1.LeaseOK
			out.Leases = append(out.Leases, st)
		}
		return out, !allOK || final
	})
	if answer == nil {
		return nil, errorf(http.StatusServiceUnavailable, apiv1.CodeUnavailable, "request ended")
	}
	return answer, nil
}

// jobCall serves start, logs and complete.
func (f *fakeControlPlane) jobCall(r *http.Request, ag *fakeAgent, op, id string) (any, error) {
	var fence int64
	var logs apiv1.Logs
	var done apiv1.Complete
	switch op {
	case "start":
		var req apiv1.Fenced
		if err := decode(r, &req); err != nil {
			return nil, err
		}
		fence = req.Fence
	case "logs":
		if err := f.decodeLogs(r, &logs); err != nil {
			return nil, err
		}
		fence = logs.Fence
	case "complete":
		if err := decode(r, &done); err != nil {
			return nil, err
		}
		fence = done.Fence
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.notifyLocked()
	f.reapLocked()
	j, ok := f.jobs[id]
	switch {
	case !ok:
		return nil, errorf(http.StatusNotFound, apiv1.CodeNotFound, "no job %s", id)
	case j.fence != fence || j.agent != ag.id:
		return nil, errorf(http.StatusConflict, apiv1.CodeStaleFence, "fence %d of job %s is stale", fence, id)
	case j.state != "leased" && j.state != "running":
		if j.state == "queued" {
			return nil, errorf(http.StatusConflict, apiv1.CodeStaleFence, "lease of job %s expired", id)
		}
		return nil, errorf(http.StatusConflict, apiv1.CodeFinished, "job %s already finished", id)
	}
	switch op {
	case "start":
		j.state = "running" // again: idempotent
		return nil, nil
	case "logs":
		stored := j.logs[fence]
		if stored == nil {
			stored = map[int64][]byte{}
			j.logs[fence] = stored
		}
		for _, c := range logs.Chunks {
			if c.Fence != fence || c.Seq < 0 {
				return nil, errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "chunk %d: bad fence or seq", c.Seq)
			}
			if old, ok := stored[c.Seq]; ok && string(old) != string(c.Data) {
				f.violate("job %s chunk %d sent twice with different data", id, c.Seq)
			}
			stored[c.Seq] = c.Data
		}
		ack := int64(-1)
		for _, ok := stored[ack+1]; ok; _, ok = stored[ack+1] {
			ack++
		}
		return &apiv1.LogsAck{Seq: ack}, nil
	default: // complete
		if !slices.Contains([]string{"succeeded", "failed", "cancelled"}, done.State) {
			return nil, errorf(http.StatusBadRequest, apiv1.CodeBadRequest, "state %q", done.State)
		}
		j.state = done.State
		j.completes = append(j.completes, done)
		return nil, nil
	}
}
