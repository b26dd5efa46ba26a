package api

import (
	"errors"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/jobs"
)

// maxWebhookBody is GitHub's own cap on a delivery.
const maxWebhookBody = 25 << 20

// githubWebhook verifies and applies a GitHub delivery. The signature is
// checked before anything else of the request is believed; a delivery id
// seen before is acknowledged and ignored.
func (s *Server) githubWebhook(w http.ResponseWriter, r *http.Request) error {
	secrets, err := s.Secrets.Webhook(r.Context())
	if err != nil {
		return err
	}
	if len(secrets) == 0 {
		s.Jobs.ObserveWebhook("rejected")
		return errorf(http.StatusServiceUnavailable, apiv1.CodeUnavailable, "no webhook secret is configured on this server")
	}
	// A delivery without a well-formed signature is refused before any of
	// its body is read; the others are hashed as they arrive.
	v, err := github.NewSignatureVerifier(r.Header.Get(github.SignatureHeader), secrets)
	if err != nil {
		s.Jobs.RejectWebhook(r.Context(), r.Header.Get(github.HeaderDelivery), err.Error(), r.RemoteAddr)
		return errorf(http.StatusUnauthorized, apiv1.CodeUnauthenticated, "%v", err)
	}
	body, err := readBody(w, r, maxWebhookBody, v)
	if err != nil {
		s.Jobs.ObserveWebhook("rejected")
		return err
	}
	if err := v.Verify(); err != nil {
		s.Jobs.RejectWebhook(r.Context(), r.Header.Get(github.HeaderDelivery), err.Error(), r.RemoteAddr)
		return errorf(http.StatusUnauthorized, apiv1.CodeUnauthenticated, "%v", err)
	}
	d, err := github.DeliveryFromHeaders(r.Header)
	if err != nil {
		s.Jobs.ObserveWebhook("rejected")
		return badRequest("%v", err)
	}
	switch d.Event {
	case "ping":
		s.Jobs.ObserveWebhook("pong")
		writeJSON(w, http.StatusOK, apiv1.WebhookResult{Outcome: "pong"})
		return nil
	case "workflow_job":
	default:
		s.Jobs.ObserveWebhook(jobs.WebhookIgnored)
		writeJSON(w, http.StatusAccepted, apiv1.WebhookResult{Outcome: jobs.WebhookIgnored, Reason: "event " + d.Event + " is not used"})
		return nil
	}
	ev, err := github.ParseWorkflowJob(body)
	if errors.Is(err, github.ErrUnknownAction) {
		s.Jobs.ObserveWebhook(jobs.WebhookIgnored)
		writeJSON(w, http.StatusAccepted, apiv1.WebhookResult{Outcome: jobs.WebhookIgnored, Reason: err.Error()})
		return nil
	}
	if err != nil {
		s.Jobs.ObserveWebhook("rejected")
		return badRequest("%v", err)
	}
	res, err := s.Jobs.IngestWorkflowJob(r.Context(), d, ev)
	if err != nil {
		return err
	}
	s.Jobs.ObserveWebhook(res.Outcome)
	status := http.StatusOK
	if res.Outcome == jobs.WebhookIgnored {
		status = http.StatusAccepted
	}
	writeJSON(w, status, apiv1.WebhookResult{Outcome: res.Outcome, JobID: res.JobID, Reason: res.Reason})
	return nil
}
