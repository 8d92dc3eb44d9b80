package pooler

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/edgepool/edgepool/pooler/accelerate"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/edge"
)

// httpListener is the edge transports' listener: POST /sql, Postgres over WebSocket and the
// Prisma Accelerate protocol. Its handler is swapped on reload (reloadHTTP), so the HTTP limits
// and the cache apply live.
type httpListener struct {
	ln      net.Listener
	srv     *http.Server
	accel   *accelerate.Server // Prisma Accelerate protocol (accelerate_mount.go); nil when disabled
	metrics *edge.Metrics
	handler atomic.Pointer[http.Handler]
	// settings and cache are those of the handler in force; only Reload (under the server's
	// reloadMu) and startHTTP touch them.
	settings config.HTTP
	cache    *edge.Cache
	// limiter is the in-flight budget of every handler on the listener, in total and per key;
	// it lives as long as the listener (reloads change its limits, not its counts).
	limiter *edge.Limiter
}

// ServeHTTP serves a request with the handler in force.
func (l *httpListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*l.handler.Load()).ServeHTTP(w, r)
}

// startHTTP serves the edge transports on cfg.Listen.HTTP when cfg.HTTP.Enabled, over TLS with
// the pool's certificate when cfg.TLS is set. They borrow from the same pool as TCP clients and
// check keys against the keyring in force (so reloads apply).
func (s *Server) startHTTP(cfg *config.Config) error {
	if cfg.Listen.HTTP == "" || !cfg.HTTP.Enabled {
		return nil
	}
	metrics := edge.NewMetrics()
	if err := metrics.Register(s.metrics.registry); err != nil {
		return fmt.Errorf("register http metrics: %w", err)
	}
	l := &httpListener{metrics: metrics, limiter: edge.NewLimiter(0, 0)}
	s.setHTTPCache(l, cfg)
	// The Accelerate endpoint is made once (its own settings are restart-only: it holds open
	// transactions); it shares the in-flight budget and the cache in force (setHTTPHandler).
	accel, err := s.mountAccelerate(cfg, l.limiter)
	if err != nil {
		return err
	}
	l.accel = accel
	s.setHTTPHandler(l, cfg)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", cfg.Listen.HTTP, err)
	}
	srv := &http.Server{Handler: l, ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout.Duration, IdleTimeout: 2 * time.Minute}
	if cfg.TLS != nil {
		srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		}
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	l.ln, l.srv = ln, srv
	s.http = l
	s.log.Info("http sql and websocket listening", "addr", ln.Addr().String(), "tls", cfg.TLS != nil,
		"cache", cfg.HTTP.Cache.Enabled)
	return nil
}

// setHTTPCache makes the cache cfg asks for: the one in force when its settings did not change,
// a new (empty) one when they did, none when it is off.
func (s *Server) setHTTPCache(l *httpListener, cfg *config.Config) {
	if l.cache != nil && cfg.HTTP.Cache == l.settings.Cache {
		return
	}
	l.cache = nil
	if cfg.HTTP.Cache.Enabled {
		l.cache = edge.NewCache(cfg.HTTP.Cache.MaxBytes, l.metrics)
	}
}

// setHTTPHandler builds the handler for cfg and puts it in force: the edge transports with
// cfg's limits and cache, and the Accelerate endpoint made at start, now with the same cache.
func (s *Server) setHTTPHandler(l *httpListener, cfg *config.Config) {
	l.settings = cfg.HTTP
	l.limiter.SetLimits(limitsFor(cfg, s.nofile).maxClients, cfg.HTTP.MaxInFlightPerKey)
	mux := http.NewServeMux()
	mux.Handle("/", edge.NewServer(edge.Options{
		Upstream:         edge.PoolUpstream(s.pool),
		Keys:             edge.KeyringFunc(s.Keyring),
		Database:         cfg.Database,
		MaxRequestBytes:  cfg.HTTP.MaxRequestBytes,
		MaxResponseBytes: cfg.HTTP.MaxResponseBytes,
		StatementTimeout: cfg.HTTP.StatementTimeout.Duration,
		Limiter:          l.limiter,
		BodyTimeout:      cfg.HTTP.BodyReadTimeout.Duration,
		Guard:            s.guard,
		CleartextAllowed: func() bool { return s.Config().AllowCleartextWithoutTLS },
		Cache:            l.cache,
		DefaultCacheTTL:  cfg.HTTP.Cache.DefaultTTL.Duration,
		WebSocket:        edge.WebSocketSessions(s.proxy),
		Metrics:          l.metrics,
		Logger:           s.log,
	}).Handler())
	if l.accel != nil {
		var c accelerate.ResultCache
		if l.cache != nil { // a nil *edge.Cache must not become a non-nil interface
			c = l.cache
		}
		l.accel.SetCache(c)
		l.accel.SetBodyTimeout(cfg.HTTP.BodyReadTimeout.Duration)
		l.accel.Register(mux)
	}
	var h http.Handler = mux
	l.handler.Store(&h)
}

// reloadHTTP applies changed HTTP limits and cache settings: new requests get a handler built
// from cfg; requests and WebSocket sessions in flight finish on the one they started with.
func (s *Server) reloadHTTP(old, cfg *config.Config) {
	if s.http == nil || (cfg.HTTP == s.http.settings && cfg.Pool.MaxClientConnections == old.Pool.MaxClientConnections) {
		return
	}
	s.setHTTPCache(s.http, cfg)
	s.setHTTPHandler(s.http, cfg)
	s.log.Info("http settings reloaded", "cache", cfg.HTTP.Cache.Enabled, "cacheMaxBytes", cfg.HTTP.Cache.MaxBytes,
		"cacheDefaultTtl", cfg.HTTP.Cache.DefaultTTL.String())
}

// HTTPAddr is the bound address of the HTTP SQL / WebSocket listener (nil if disabled).
func (s *Server) HTTPAddr() net.Addr {
	if s.http == nil {
		return nil
	}
	return s.http.ln.Addr()
}

// shutdownHTTP stops accepting HTTP requests and lets those in flight finish within timeout.
// WebSocket sessions are wire-protocol sessions: the proxy's drain ends them. The returned
// channel closes when the HTTP server has stopped.
func (s *Server) shutdownHTTP(timeout time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if s.http == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := s.http.srv.Shutdown(ctx); err != nil {
			_ = s.http.srv.Close()
		}
		if s.http.accel != nil { // no request can reach its transactions now: roll them back
			s.http.accel.Close()
		}
	}()
	return done
}
