package accelerate

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Accelerate endpoint's Prometheus collectors.
type Metrics struct {
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	openTransactions prometheus.Gauge
	transactions     *prometheus.CounterVec
	cacheLookups     *prometheus.CounterVec
}

// NewMetrics creates the collectors without registering them.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgepool_accelerate_requests_total",
			Help: "Prisma Accelerate protocol requests by endpoint and response status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edgepool_accelerate_request_duration_seconds",
			Help:    "Latency of Prisma Accelerate protocol requests by endpoint.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		openTransactions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edgepool_accelerate_transactions_open",
			Help: "Interactive transactions open now (each holds one upstream connection).",
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgepool_accelerate_transactions_total",
			Help: "Interactive transactions ended, by outcome (committed, rolled_back, timed_out).",
		}, []string{"outcome"}),
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgepool_accelerate_cache_requests_total",
			Help: "Queries that sent a cache strategy, by accelerate-cache-status (ttl, swr, miss, none).",
		}, []string{"status"}),
	}
}

// Register adds every collector to reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.openTransactions, m.transactions, m.cacheLookups} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *Metrics) observe(endpoint string, code int, took time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(endpoint).Observe(took.Seconds())
}
