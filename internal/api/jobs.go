package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
)

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req apiv1.SubmitJob
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if req.TimeoutSeconds < 0 || req.TimeoutSeconds > 365*24*3600 {
		return badRequest("timeout_seconds: %d is out of range", req.TimeoutSeconds)
	}
	sub := jobs.Submission{
		OrgID: p.Org, CreatedBy: actor(p), Argv: req.Argv, Env: req.Env, Labels: req.Labels,
		Timeout: time.Duration(req.TimeoutSeconds) * time.Second, IdempotencyKey: req.IdempotencyKey,
	}
	if c := req.Container; c != nil {
		sub.Container = &store.Container{Image: c.Image, ReadOnlyRoot: c.ReadOnlyRoot}
	}
	j, created, err := s.Jobs.Submit(r.Context(), sub)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	writeJSON(w, status, jobJSON(j))
	return nil
}

// pathID reads the {id} path value, refusing anything that is not an id
// with the prefix (what names the kind in the 404) before it reaches the
// database.
func pathID(r *http.Request, prefix, what string) (string, error) {
	id := r.PathValue("id")
	if !ids.Valid(prefix, id) {
		return "", notFound(what + " " + strconv.Quote(id))
	}
	return id, nil
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := pathID(r, "job", "job")
	if err != nil {
		return err
	}
	j, err := s.Jobs.Get(r.Context(), p.Org, id)
	if err != nil {
		return err
	}
	out := jobJSON(j)
	if s.Egress != nil {
		rec, err := s.Egress.Get(r.Context(), p.Org, id)
		switch {
		case err == nil:
			out.Egress = &apiv1.JobEgress{Policy: rec.Policy, Report: rec.Report}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// suggestEgress proposes an allow-list for the org's jobs with a label,
// from their egress reports of the last days (default 7).
func (s *Server) suggestEgress(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if s.Egress == nil {
		return notFound("egress reports are not kept by this server")
	}
	q := r.URL.Query()
	days := 7
	if d := q.Get("days"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 90 {
			return badRequest("days: must be 1-90")
		}
		days = n
	}
	label := q.Get("label")
	if len(label) > 256 {
		return badRequest("label: at most 256 bytes")
	}
	since := s.Now().Add(-time.Duration(days) * 24 * time.Hour)
	sug, err := s.Egress.Suggest(r.Context(), p.Org, label, since)
	if err != nil {
		return err
	}
	out := apiv1.EgressSuggestion{Label: sug.Label, Since: sug.Since, Jobs: sug.Jobs, Allow: []apiv1.EgressSuggestedEntry{}}
	for _, e := range sug.Allow {
		out.Allow = append(out.Allow, apiv1.EgressSuggestedEntry{Entry: e.Entry, Jobs: e.Jobs, Count: e.Count, Listed: e.Listed})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	f := store.JobFilter{OrgID: p.Org, State: store.JobState(q.Get("state")), Before: q.Get("before"), Limit: 50}
	if f.State != "" && !f.State.Valid() {
		return badRequest("state: %q is not a job state", f.State)
	}
	if f.Before != "" && !ids.Valid("job", f.Before) {
		return badRequest("before: %q is not a job id", f.Before)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return badRequest("limit: must be 1-500")
		}
		f.Limit = n
	}
	list, err := s.Jobs.List(r.Context(), f)
	if err != nil {
		return err
	}
	out := apiv1.JobList{Jobs: make([]apiv1.Job, len(list))}
	for i, j := range list {
		out.Jobs[i] = jobJSON(j)
	}
	if len(list) == f.Limit {
		out.Next = list[len(list)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := pathID(r, "job", "job")
	if err != nil {
		return err
	}
	j, err := s.Jobs.Cancel(r.Context(), p.Org, id, actor(p))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, jobJSON(j))
	return nil
}
