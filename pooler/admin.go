package pooler

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgepool/edgepool/pooler/pool"
	"github.com/edgepool/edgepool/pooler/session"
)

// adminHandler serves /healthz and /readyz (the kubelet's probes), /metrics (scraping), and
// /debug/pools and the Go profiler (/debug/pprof/, as net/http/pprof) to loopback clients only
// (inside the pod: kubectl port-forward or exec), so the admin port, which listens on the pod's
// address for the probes, tells the network no more than probes and scraping need.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			reason := "starting"
			switch {
			case s.draining.Load():
				reason = "draining"
			case s.started.Load() && !s.upstreamOK.Load():
				reason = "upstream not reached yet"
			}
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /debug/pools", loopbackOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.PoolsReport())
	})))
	mux.Handle("GET /debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("GET /debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("GET /debug/pprof/trace", loopbackOnly(http.HandlerFunc(pprof.Trace)))
	return mux
}

// loopbackOnly answers 403 to clients that are not on the loopback interface.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "only from inside the pod (kubectl port-forward)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// PoolsReport is /debug/pools: PgBouncer's SHOW POOLS as JSON.
type PoolsReport struct {
	Database string        `json:"database"`
	User     string        `json:"upstreamUser"`
	Mode     string        `json:"mode"`
	Ready    bool          `json:"ready"`
	Draining bool          `json:"draining"`
	Clients  session.Stats `json:"clients"`
	Servers  pool.Stats    `json:"servers"`
	// MaxWaitSeconds is not tracked per client; AvgWaitSeconds is over all waits so far.
	AvgWaitSeconds float64 `json:"avgWaitSeconds"`
}

// PoolsReport returns the current pool and client counters.
func (s *Server) PoolsReport() PoolsReport {
	cfg := s.Config()
	ps := s.pool.Stats()
	r := PoolsReport{Database: cfg.Database, User: cfg.Upstream.User, Mode: cfg.Pool.Mode, Ready: s.Ready(),
		Draining: s.draining.Load(), Clients: s.proxy.Stats(), Servers: ps}
	if ps.Waits > 0 {
		r.AvgWaitSeconds = ps.WaitSeconds / float64(ps.Waits)
	}
	return r
}

// Metrics are the pooler's Prometheus metrics; it also observes sessions.
type Metrics struct {
	registry     *prometheus.Registry
	wait         prometheus.Histogram
	transactions prometheus.Counter
	txSeconds    prometheus.Histogram
	serverErrors *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	reloads      prometheus.Counter
	reloadErrors prometheus.Counter
}

func newMetrics() *Metrics {
	m := &Metrics{registry: prometheus.NewRegistry()}
	m.wait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "edgepool_pool_wait_seconds", Help: "Time clients waited for an upstream connection.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
	})
	m.transactions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edgepool_transactions_total", Help: "Transactions (upstream borrows in transaction mode) completed.",
	})
	m.txSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "edgepool_transaction_duration_seconds", Help: "Time a client held an upstream connection per transaction.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	m.serverErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgepool_server_errors_total", Help: "Errors returned by PostgreSQL, by SQLSTATE class.",
	}, []string{"class"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgepool_client_bytes_total", Help: "Bytes exchanged with clients (counted when a session ends).",
	}, []string{"direction"})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edgepool_auth_failures_total",
		Help: "Client logins refused, by transport (tcp, websocket, http) and reason (wrong_key, unknown_key_name, " +
			"protocol_error, cleartext_without_tls, too_many_failures).",
	}, []string{"transport", "reason"})
	m.reloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "edgepool_config_reloads_total", Help: "Config reloads applied."})
	m.reloadErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "edgepool_config_reload_errors_total", Help: "Config reloads rejected."})
	return m
}

func (m *Metrics) register(s *Server) {
	gauge := func(name, help string, labels prometheus.Labels, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	m.registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.wait, m.transactions, m.txSeconds, m.serverErrors, m.bytes, m.authFailures, m.reloads, m.reloadErrors,
		gauge("edgepool_clients", "Client sessions by state.", prometheus.Labels{"state": "active"},
			func() float64 { return float64(s.proxy.Stats().ClientsActive) }),
		gauge("edgepool_clients", "Client sessions by state.", prometheus.Labels{"state": "waiting"},
			func() float64 { return float64(s.proxy.Stats().ClientsWaiting) }),
		gauge("edgepool_clients", "Client sessions by state.", prometheus.Labels{"state": "idle"},
			func() float64 { return float64(s.proxy.Stats().ClientsIdle) }),
		gauge("edgepool_clients", "Client sessions by state.", prometheus.Labels{"state": "login"},
			func() float64 { return float64(s.proxy.Stats().LoggingIn) }),
		gauge("edgepool_clients", "Client sessions by state.", prometheus.Labels{"state": "login_queued"},
			func() float64 { return float64(s.proxy.Stats().LoginQueued) }),
		gauge("edgepool_servers", "Upstream connections by state.", prometheus.Labels{"state": "active"},
			func() float64 { return float64(s.pool.Stats().Active) }),
		gauge("edgepool_servers", "Upstream connections by state.", prometheus.Labels{"state": "idle"},
			func() float64 { return float64(s.pool.Stats().Idle) }),
		gauge("edgepool_pool_size", "Configured upstream connections of this replica.", nil,
			func() float64 { return float64(s.pool.Stats().Size) }),
		gauge("edgepool_ready", "1 when the pooler reports ready.", nil, func() float64 {
			if s.Ready() {
				return 1
			}
			return 0
		}),
		counter("edgepool_client_connections_total", "Client connections accepted.",
			func() float64 { return float64(s.proxy.Stats().Accepted) }),
		counter("edgepool_client_logins_evicted_total",
			"Connections closed before finishing their login to make room for newer ones (pool.maxAuthenticatingConnections).",
			func() float64 { return float64(s.proxy.Stats().LoginsEvicted) }),
		counter("edgepool_client_connections_refused_total",
			"Connections refused with 53300: pool.maxClientConnections clients were logged in, or no login place came free for them in time.",
			func() float64 { return float64(s.proxy.Stats().Refused) }),
		counter("edgepool_relay_loop_entries_total", "Times a client session moved onto the relay loop (pool.relayLoop).",
			func() float64 { return float64(s.proxy.Stats().RelayLoopEntries) }),
		counter("edgepool_relay_loop_handoffs_total",
			"Times the relay loop handed a client session to a goroutine (something it does not do without waiting: a login-time sync, a large message, COPY, a client not reading, an error, the session's end).",
			func() float64 { return float64(s.proxy.Stats().RelayLoopHandoffs) }),
		counter("edgepool_relay_loop_upstream_detaches_total",
			"Times the relay loop took an upstream socket out of Go's netpoller into its own epoll set (it stays there across borrows).",
			func() float64 { return float64(s.pool.Stats().SocketsDetached) }),
		counter("edgepool_relay_loop_upstream_attaches_total",
			"Times an upstream socket the relay loop had went back to Go's netpoller for a goroutine's use (pgconn, a handed-off session).",
			func() float64 { return float64(s.pool.Stats().SocketsAttached) }),
		counter("edgepool_pool_wait_timeouts_total", "Clients that got the query-wait timeout error.",
			func() float64 { return float64(s.pool.Stats().WaitTimeouts) }),
		counter("edgepool_upstream_connects_total", "Upstream connection attempts.",
			func() float64 { return float64(s.pool.Stats().Connects) }),
		counter("edgepool_upstream_connect_errors_total", "Failed upstream connection attempts.",
			func() float64 { return float64(s.pool.Stats().ConnectErrors) }),
	)
}

func (m *Metrics) observeWait(d time.Duration) { m.wait.Observe(d.Seconds()) }

// authFailed counts a refused login (auth.Guard's onFailure).
func (m *Metrics) authFailed(transport, reason string) {
	m.authFailures.WithLabelValues(transport, reason).Inc()
}

// Transaction implements session.Observer.
func (m *Metrics) Transaction(d time.Duration) {
	m.transactions.Inc()
	m.txSeconds.Observe(d.Seconds())
}

// ServerError implements session.Observer.
func (m *Metrics) ServerError(code string) {
	class := "??"
	if len(code) >= 2 {
		class = code[:2]
	}
	m.serverErrors.WithLabelValues(class).Inc()
}

// Bytes implements session.Observer.
func (m *Metrics) Bytes(in, out int64) {
	m.bytes.WithLabelValues("in").Add(float64(in))
	m.bytes.WithLabelValues("out").Add(float64(out))
}
