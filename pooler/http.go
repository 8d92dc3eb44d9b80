package pooler

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/edge"
)

// httpListener is the edge transports' listener: POST /sql and Postgres over WebSocket. Its
// handler is swapped on reload (reloadHTTP), so the HTTP limits and the cache apply live.
type httpListener struct {
	ln      net.Listener
	srv     *http.Server
	metrics *edge.Metrics
	handler atomic.Pointer[http.Handler]
	// settings and cache are those of the handler in force; only Reload (under the server's
	// reloadMu) and startHTTP touch them.
	settings config.HTTP
	cache    *edge.Cache
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
	l := &httpListener{metrics: metrics}
	s.setHTTPHandler(l, cfg)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", cfg.Listen.HTTP, err)
	}
	srv := &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
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

// setHTTPHandler builds the edge handler for cfg and puts it in force. The cache is kept when
// its settings did not change (a new one starts empty).
func (s *Server) setHTTPHandler(l *httpListener, cfg *config.Config) {
	if l.cache == nil || cfg.HTTP.Cache != l.settings.Cache {
		l.cache = nil
		if cfg.HTTP.Cache.Enabled {
			l.cache = edge.NewCache(cfg.HTTP.Cache.MaxBytes, l.metrics)
		}
	}
	l.settings = cfg.HTTP
	var handler http.Handler = edge.NewServer(edge.Options{
		Upstream:         edge.PoolUpstream(s.pool),
		Keys:             edge.KeyringFunc(s.Keyring),
		Database:         cfg.Database,
		MaxRequestBytes:  cfg.HTTP.MaxRequestBytes,
		MaxResponseBytes: cfg.HTTP.MaxResponseBytes,
		StatementTimeout: cfg.HTTP.StatementTimeout.Duration,
		MaxInFlight:      cfg.Pool.MaxClientConnections,
		Cache:            l.cache,
		DefaultCacheTTL:  cfg.HTTP.Cache.DefaultTTL.Duration,
		WebSocket:        edge.WebSocketSessions(s.proxy),
		Metrics:          l.metrics,
		Logger:           s.log,
	}).Handler()
	l.handler.Store(&handler)
}

// reloadHTTP applies changed HTTP limits and cache settings: new requests get a handler built
// from cfg; requests and WebSocket sessions in flight finish on the one they started with.
func (s *Server) reloadHTTP(old, cfg *config.Config) {
	if s.http == nil || (cfg.HTTP == s.http.settings && cfg.Pool.MaxClientConnections == old.Pool.MaxClientConnections) {
		return
	}
	s.setHTTPHandler(s.http, cfg)
	s.log.Info("http settings reloaded", "cache", cfg.HTTP.Cache.Enabled, "cacheMaxBytes", cfg.HTTP.Cache.MaxBytes,
		"cacheDefaultTTL", cfg.HTTP.Cache.DefaultTTL.String())
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
	}()
	return done
}
