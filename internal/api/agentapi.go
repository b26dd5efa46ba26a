package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/egress"
	"github.com/nimbus-build/nimbus/internal/fleet"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/store"
)

const (
	maxLogBody   = 8 << 20
	maxChunk     = 1 << 20
	maxLeaseWait = 60 * time.Second
	maxAgentJobs = 1024
)

// enroll exchanges a one-time join token for an agent credential.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) error {
	tok, err := bearer(r)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(tok, auth.JoinTokenPrefix) || len(tok) > 128 {
		return errorf(http.StatusUnauthorized, apiv1.CodeUnauthenticated, "enrollment takes a join token (nmbj_…) from `nimbus ctl agents join-token`")
	}
	var req apiv1.Enroll
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if err := validName("name", req.Name); err != nil {
		return err
	}
	labels, err := jobs.NormalizeLabels(req.Labels)
	if err != nil {
		return err
	}
	if req.MaxJobs < 1 || req.MaxJobs > maxAgentJobs {
		return badRequest("max_jobs: 1-%d", maxAgentJobs)
	}
	a, err := s.Fleet.Enroll(r.Context(), tok, fleet.Enrollment{Name: req.Name, Labels: labels, MaxJobs: req.MaxJobs,
		Hostname: trimTo(req.Hostname, 255), Version: trimTo(req.Version, 64)})
	if err != nil {
		return err
	}
	return s.writeCredential(w, http.StatusCreated, a)
}

func (s *Server) writeCredential(w http.ResponseWriter, status int, a store.Agent) error {
	cred, expires, err := s.Fleet.Credential(a)
	if err != nil {
		return err
	}
	writeJSON(w, status, apiv1.Enrolled{AgentID: a.ID, Org: a.OrgID, Credential: cred, ExpiresAt: expires, AllowedLabels: a.AllowedLabels})
	return nil
}

func trimTo(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	return s.writeCredential(w, http.StatusOK, a)
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	var req apiv1.Register
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	labels, err := jobs.NormalizeLabels(req.Labels)
	if err != nil {
		return err
	}
	if req.MaxJobs < 1 || req.MaxJobs > maxAgentJobs {
		return badRequest("max_jobs: 1-%d", maxAgentJobs)
	}
	a, err = s.Fleet.Register(r.Context(), a, fleet.Registration{Labels: labels, MaxJobs: req.MaxJobs,
		Hostname: trimTo(req.Hostname, 255), Version: trimTo(req.Version, 64)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, agentJSON(a, s.Now()))
	return nil
}

func (s *Server) lease(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	var req apiv1.LeaseRequest
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	wait := time.Duration(req.WaitSeconds) * time.Second
	if wait < 0 || wait > maxLeaseWait {
		return badRequest("wait_seconds: 0-%d", int(maxLeaseWait/time.Second))
	}
	l, err := s.Jobs.Lease(r.Context(), a, wait)
	if err != nil {
		return err
	}
	if l == nil {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	out := apiv1.Lease{Job: jobJSON(l.Job), Fence: l.Job.Fence, TTLSeconds: int64(s.Jobs.Config().LeaseTTL / time.Second)}
	if l.JITConfig != "" {
		out.Runner = &apiv1.RunnerLease{Name: l.RunnerName, JITConfig: l.JITConfig, Labels: l.Job.Labels}
		out.Mask = append(out.Mask, l.JITConfig)
	}
	if s.JobAccess != nil {
		acc, err := s.JobAccess(r.Context(), l.Job)
		if err != nil {
			s.log.Warn("job environment", "job_id", l.Job.ID, "err", err)
		}
		out.Env, out.Cache = acc.Env, acc.Cache
		if acc.Cache != nil && acc.Cache.Token != "" {
			out.Mask = append(out.Mask, acc.Cache.Token)
		}
	}
	if s.Egress != nil {
		p, err := s.Egress.Lease(r.Context(), l.Job, "agent:"+a.ID)
		if err != nil {
			// The job is leased already: fail closed, the platform only.
			s.log.Error("egress policy; the job runs offline", "job_id", l.Job.ID, "err", err)
			p = apiv1.EgressPolicy{Mode: "offline"}
		}
		out.Egress = &p
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	var req apiv1.Sync
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if len(req.Leases) > maxAgentJobs {
		return badRequest("leases: at most %d", maxAgentJobs)
	}
	wait := time.Duration(req.WaitSeconds) * time.Second
	if wait < 0 || wait > maxLeaseWait {
		return badRequest("wait_seconds: 0-%d", int(maxLeaseWait/time.Second))
	}
	refs := make([]jobs.LeaseRef, 0, len(req.Leases))
	var out apiv1.Synced
	for _, l := range req.Leases {
		if !ids.Valid("job", l.JobID) {
			out.Leases = append(out.Leases, apiv1.LeaseStatus{JobID: l.JobID, Status: apiv1.LeaseLost})
			continue
		}
		refs = append(refs, jobs.LeaseRef{JobID: l.JobID, Fence: l.Fence})
	}
	states, err := s.Jobs.Sync(r.Context(), a, refs, wait)
	if err != nil {
		return err
	}
	for _, st := range states {
		out.Leases = append(out.Leases, apiv1.LeaseStatus{JobID: st.JobID, Status: st.Status, ExpiresAt: st.ExpiresAt})
	}
	if out.Leases == nil {
		out.Leases = []apiv1.LeaseStatus{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) startJob(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	id, err := pathID(r, "job", "job")
	if err != nil {
		return err
	}
	var req apiv1.Fenced
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	j, err := s.Jobs.Start(r.Context(), a, id, req.Fence)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, jobJSON(j))
	return nil
}

func (s *Server) appendLogs(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	id, err := pathID(r, "job", "job")
	if err != nil {
		return err
	}
	req, err := decodeLogs(w, r)
	if err != nil {
		return err
	}
	if len(req.Chunks) == 0 && !req.End {
		return badRequest("chunks: empty")
	}
	if len(req.Chunks) > apiv1.MaxLogChunks {
		return badRequest("chunks: %d, at most %d in one upload", len(req.Chunks), apiv1.MaxLogChunks)
	}
	chunks := make([]logs.Chunk, len(req.Chunks))
	for i, c := range req.Chunks {
		if c.Seq < 0 || len(c.Data) > maxChunk || c.Fence != 0 && c.Fence != req.Fence {
			return badRequest("chunks[%d]: seq must be ≥ 0, data at most %d bytes, fence that of the request", i, maxChunk)
		}
		chunks[i] = logs.Chunk{Seq: c.Seq, Data: c.Data}
	}
	ack, err := s.Logs.Append(r.Context(), a, id, req.Fence, chunks, req.End)
	if errors.Is(err, logs.ErrBusy) {
		w.Header().Set("Retry-After", "1")
		return errorf(http.StatusTooManyRequests, apiv1.CodeTooMany, "the server's log ingest queue is full: send again after Retry-After")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiv1.LogsAck{Seq: ack.Seq, Full: ack.Full})
	return nil
}

// decodeLogs reads a logs upload in its binary form (apiv1.ContentTypeLogs)
// or in JSON.
func decodeLogs(w http.ResponseWriter, r *http.Request) (apiv1.Logs, error) {
	var req apiv1.Logs
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case ct == "" || err == nil && mt == "application/json":
		err := decode(w, r, maxLogBody, &req)
		return req, err
	case err != nil || mt != apiv1.ContentTypeLogs:
		return req, errorf(http.StatusUnsupportedMediaType, apiv1.CodeUnsupported, "Content-Type must be application/json or %s", apiv1.ContentTypeLogs)
	}
	body, err := readBody(w, r, maxLogBody, io.Discard)
	if err != nil {
		return req, err
	}
	if req, err = apiv1.DecodeLogsBinary(body, maxChunk); err != nil {
		return req, badRequest("request body: %v", err)
	}
	return req, nil
}

func (s *Server) completeJob(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	id, err := pathID(r, "job", "job")
	if err != nil {
		return err
	}
	var req apiv1.Complete
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	st := store.JobState(req.State)
	if !st.Terminal() {
		return badRequest("state: succeeded, failed or cancelled")
	}
	if len(req.Reason) > 4096 {
		return badRequest("reason: at most 4096 bytes")
	}
	if req.Egress != nil {
		if err := egress.ValidateReport(*req.Egress); err != nil {
			return badRequest("egress: %v", err)
		}
	}
	if req.Egress != nil && s.Egress != nil {
		// The report is kept before the completion, so that a finished job
		// shows it; only under the live lease, so a stale agent's report is
		// not. The completion stands whatever happens to its report.
		if live, err := s.Jobs.CheckLease(r.Context(), a, id, req.Fence); err == nil {
			if err := s.Egress.Report(r.Context(), live.OrgID, live.ID, *req.Egress); err != nil {
				s.log.Warn("store egress report", "job_id", id, "err", err)
			}
		}
	}
	j, err := s.Jobs.Complete(r.Context(), a, id, req.Fence, store.Outcome{State: st, ExitCode: req.ExitCode, Reason: req.Reason})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, jobJSON(j))
	return nil
}
