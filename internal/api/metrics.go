package api

import (
	"crypto/subtle"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// MetricsAccess says where /metrics is served and to whom. Its counters
// cover every org of the installation, so it is not for every client of
// a public listener: app serves it on the API's listener only without
// TLS (a laptop, a private network) or with a token, and otherwise on
// --metrics-listen alone.
type MetricsAccess struct {
	// Elsewhere: the API's listener does not serve /metrics; the answer
	// there is 404 with this message, saying where it is.
	Elsewhere string
	// Token is the bearer token a scraper must present, wherever metrics
	// are served (empty: none).
	Token string
}

// MetricsHandler serves the metrics (with the token check) for a
// listener of their own.
func (s *Server) MetricsHandler() http.Handler {
	return s.wrap(s.serveMetrics)
}

// metrics is /metrics on the API's listener.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.Metrics.Elsewhere != "" {
		return errorf(http.StatusNotFound, apiv1.CodeNotFound, "%s", s.Metrics.Elsewhere)
	}
	return s.serveMetrics(w, r)
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	if s.Gatherer == nil {
		return notFound("metrics")
	}
	if s.Metrics.Token != "" {
		tok, err := bearer(r)
		if err != nil {
			return err
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(s.Metrics.Token)) != 1 {
			return errorf(http.StatusUnauthorized, apiv1.CodeUnauthenticated, "metrics take the token of --metrics-token-file")
		}
	}
	promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	return nil
}
