package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EdgeLimits bound what a client can hold of the server before it has
// proven who it is: memory (bodies of the open routes, which are read
// before the credential they carry can be checked), time (slow bodies)
// and connections. Each zero field turns its limit off; the flags of
// `nimbus server` and `nimbus up` set DefaultEdgeLimits.
//
// The open routes are those of apiv1.Routes with AuthNone or AuthJoin:
// GitHub's webhook (its signature covers the whole body) and agent
// enrollment (the join token is spent by the request), and the operations
// routes, which take no body.
type EdgeLimits struct {
	// OpenBodyBytes bounds the bytes of open routes' request bodies in
	// flight, server-wide. A body is charged its Content-Length (the
	// route's maximum when the length is not sent) before it is read; one
	// that does not fit is refused at once with 503 and Retry-After. An
	// eighth of it (at least 1 MiB) is kept for bodies of at most 1 MiB,
	// so floods of large bodies leave room for GitHub's ordinary
	// deliveries.
	OpenBodyBytes int64
	// OpenBodyBytesPerClient bounds the same per client address: beyond
	// it, 429 and Retry-After.
	OpenBodyBytesPerClient int64
	// OpenBodyTimeout is how long an open route's body may take to
	// arrive, whatever its rate: past it, 408 and the connection closes.
	OpenBodyTimeout time.Duration
	// MinBodyRate (bytes per second, on average since the request began)
	// is what every request body must keep up once BodyRateGrace has
	// passed: a slower one gets 408 and its connection closes. A handler
	// that answers without reading the body (401) is not held up by it
	// either: the server's discard of an unread body stops at the same
	// deadline.
	MinBodyRate   int64
	BodyRateGrace time.Duration
	// MaxConnsPerClient bounds the open connections of one client
	// address (LimitListener); further ones are answered 429 (over plain
	// HTTP) and closed. Behind a reverse proxy every client has the
	// proxy's address: let the proxy bound them and set 0 here.
	MaxConnsPerClient int
}

// DefaultEdgeLimits are the limits `nimbus server` and `nimbus up` run with.
func DefaultEdgeLimits() EdgeLimits {
	return EdgeLimits{
		OpenBodyBytes: 64 << 20,
		// One delivery of GitHub's largest (25 MB) at a time per address.
		OpenBodyBytesPerClient: maxWebhookBody + 1<<20,
		// GitHub gives up on a delivery after 10 s.
		OpenBodyTimeout:   20 * time.Second,
		MinBodyRate:       1 << 10,
		BodyRateGrace:     10 * time.Second,
		MaxConnsPerClient: 256,
	}
}

// Why a request or connection was shed (the reason label of
// nimbus_http_shed_total).
const (
	shedOpenBodies   = "open_body_bytes"
	shedClientBodies = "client_body_bytes"
	shedClientConns  = "client_connections"
	shedSlowBody     = "slow_body"
)

// edgeMetrics are the edge limits' metrics.
type edgeMetrics struct {
	shed      *prometheus.CounterVec
	openBytes prometheus.Gauge
	conns     prometheus.Gauge
}

func newEdgeMetrics(reg prometheus.Registerer) *edgeMetrics {
	m := &edgeMetrics{
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_http_shed_total",
			Help: "Requests and connections refused by the edge limits, by reason.",
		}, []string{"reason"}),
		openBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nimbus_http_open_body_bytes",
			Help: "Bytes of unauthenticated request bodies charged against --open-body-budget now.",
		}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nimbus_http_connections",
			Help: "Open client connections of the API listeners.",
		}),
	}
	for _, r := range []string{shedOpenBodies, shedClientBodies, shedClientConns, shedSlowBody} {
		m.shed.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.shed, m.openBytes, m.conns)
	}
	return m
}
