package registry

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the registry's Prometheus metrics (labels bounded: upstream
// names come from the configuration, never from requests).
type metrics struct {
	cacheResults *prometheus.CounterVec
	upstreamReqs *prometheus.CounterVec
	upBytes      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		cacheResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_registry_cache_total",
			Help: "Manifest and blob answers by how they were served: hit, miss, revalidated, stale, local.",
		}, []string{"object", "result"}),
		upstreamReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_registry_upstream_requests_total",
			Help: "Requests to upstream registries by method (token: the token endpoint) and status class (error: no answer).",
		}, []string{"upstream", "method", "status"}),
		upBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_registry_upstream_bytes_total",
			Help: "Blob bytes received from upstream registries.",
		}, []string{"upstream"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.cacheResults, m.upstreamReqs, m.upBytes} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) cache(object, result string) { m.cacheResults.WithLabelValues(object, result).Inc() }

func (m *metrics) upstreamRequest(upstream, method string, resp *http.Response, err error) {
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode/100) + "xx"
	}
	m.upstreamReqs.WithLabelValues(upstream, method, status).Inc()
}

func (m *metrics) upstreamBytes(upstream string, n int) {
	m.upBytes.WithLabelValues(upstream).Add(float64(n))
}
