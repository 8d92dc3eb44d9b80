package pooler

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/edgepool/edgepool/pooler/accelerate"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/edge"
)

// httpListener is the edge transports' listener: POST /sql and Postgres over WebSocket.
type httpListener struct {
	ln    net.Listener
	srv   *http.Server
	accel *accelerate.Server // Prisma Accelerate protocol (accelerate_mount.go); nil when disabled
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
	var cache *edge.Cache
	if cfg.HTTP.Cache.Enabled {
		cache = edge.NewCache(cfg.HTTP.Cache.MaxBytes, metrics)
	}
	// One in-flight budget for every handler on the listener: in total, and per key.
	limiter := edge.NewLimiter(limitsFor(cfg, s.nofile).maxClients, cfg.HTTP.MaxInFlightPerKey)
	handler := edge.NewServer(edge.Options{
		Upstream:         edge.PoolUpstream(s.pool),
		Keys:             edge.KeyringFunc(s.Keyring),
		Database:         cfg.Database,
		MaxRequestBytes:  cfg.HTTP.MaxRequestBytes,
		MaxResponseBytes: cfg.HTTP.MaxResponseBytes,
		StatementTimeout: cfg.HTTP.StatementTimeout.Duration,
		Limiter:          limiter,
		BodyTimeout:      cfg.HTTP.BodyReadTimeout.Duration,
		Guard:            s.guard,
		CleartextAllowed: func() bool { return s.Config().AllowCleartextWithoutTLS },
		Cache:            cache,
		DefaultCacheTTL:  cfg.HTTP.Cache.DefaultTTL.Duration,
		WebSocket:        edge.WebSocketSessions(s.proxy),
		Metrics:          metrics,
		Logger:           s.log,
	}).Handler()
	mux := http.NewServeMux()
	mux.Handle("/", handler)
	accel, err := s.mountAccelerate(mux, cfg, cache, limiter)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", cfg.Listen.HTTP)
	if err != nil {
		return fmt.Errorf("listen http %s: %w", cfg.Listen.HTTP, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout.Duration, IdleTimeout: 2 * time.Minute}
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
	s.http = &httpListener{ln: ln, srv: srv, accel: accel}
	s.log.Info("http sql and websocket listening", "addr", ln.Addr().String(), "tls", cfg.TLS != nil,
		"cache", cfg.HTTP.Cache.Enabled)
	return nil
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
