package edge

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the edge transports' Prometheus collectors. Register them on the pooler's
// registry (the admin /metrics endpoint).
type Metrics struct {
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	wsActive       prometheus.Gauge
	wsSessions     prometheus.Counter
	cacheLookups   *prometheus.CounterVec
	cacheEvictions prometheus.Counter
	cacheBytes     prometheus.Gauge
	cacheEntries   prometheus.Gauge
}

// NewMetrics creates the collectors without registering them.
func NewMetrics() *Metrics {
	return &Metrics{
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgepool_http_requests_total",
			Help: "HTTP SQL requests by kind (single, batch) and response status code.",
		}, []string{"kind", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgepool_http_request_duration_seconds",
			Help:    "Latency of HTTP SQL requests, from request to response written, by kind.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
		wsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgepool_websocket_sessions_active",
			Help: "Postgres-over-WebSocket sessions open now.",
		}),
		wsSessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgepool_websocket_sessions_total",
			Help: "Postgres-over-WebSocket sessions accepted.",
		}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgepool_http_cache_requests_total",
			Help: "HTTP SQL requests that asked for the query cache, by result (hit, stale, miss, bypass).",
		}, []string{"result"}),
		cacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edgepool_http_cache_evictions_total",
			Help: "Cache entries evicted to stay within the byte budget.",
		}),
		cacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgepool_http_cache_bytes",
			Help: "Bytes held by the query cache.",
		}),
		cacheEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgepool_http_cache_entries",
			Help: "Entries held by the query cache.",
		}),
	}
}

// Register adds every collector to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.httpRequests, m.httpDuration, m.wsActive, m.wsSessions,
		m.cacheLookups, m.cacheEvictions, m.cacheBytes, m.cacheEntries} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) observeRequest(kind string, code int, took time.Duration) {
	m.httpRequests.WithLabelValues(kind, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(kind).Observe(took.Seconds())
}
