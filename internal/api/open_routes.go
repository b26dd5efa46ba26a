package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/httperror"
)

// openBodyLimit is the largest body an open route takes.
func openBodyLimit(rt apiv1.Route) int64 {
	if rt == apiv1.RouteGitHubWebhook {
		return maxWebhookBody
	}
	return maxBody
}

// open guards a route that reads its body before any credential is
// checked (apiv1.AuthNone, AuthJoin): the body must arrive within
// EdgeLimits.OpenBodyTimeout, and it is charged against the budget of
// open bodies in flight before a byte of it is read. What does not fit is
// shed at once (503, or 429 for an address over its share), with
// Retry-After and the connection closed, so that a flood costs the
// server neither memory nor time and GitHub gets a quick answer.
func (s *Server) open(rt apiv1.Route, h http.Handler) http.Handler {
	limit := openBodyLimit(rt)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		if g, ok := r.Body.(*guardedBody); ok && s.Limits.OpenBodyTimeout > 0 {
			g.limitTo(s.Limits.OpenBodyTimeout)
		}
		if s.budget != nil {
			n := r.ContentLength
			if n > limit {
				w.Header().Set("Connection", "close")
				httperror.Write(w, httperror.API, httperror.Error{Status: http.StatusRequestEntityTooLarge, Code: apiv1.CodeTooLarge,
					Message: "request body larger than " + strconv.FormatInt(limit, 10) + " bytes"})
				return
			}
			if n < 0 {
				n = limit // not declared: charge the most it may be
			}
			release, err := s.budget.acquire(clientHost(r.RemoteAddr), n)
			if err != nil {
				s.shed(w, err)
				return
			}
			defer release()
		}
		h.ServeHTTP(w, r)
	})
}

// shed refuses a request the budget has no room for.
func (s *Server) shed(w http.ResponseWriter, err error) {
	e := httperror.Error{Status: http.StatusServiceUnavailable, Code: apiv1.CodeUnavailable, Message: err.Error() + "; try again shortly"}
	reason := shedOpenBodies
	if errors.Is(err, errClientBodiesFull) {
		e.Status, e.Code, reason = http.StatusTooManyRequests, apiv1.CodeTooMany, shedClientBodies
	}
	s.edgeMet.shed.WithLabelValues(reason).Inc()
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Connection", "close")
	httperror.Write(w, httperror.API, e)
}
