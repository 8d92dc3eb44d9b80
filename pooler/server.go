// Package pooler assembles the data plane: one upstream pool per process, the Postgres wire
// listener, the admin HTTP listener, live config reload and the SIGTERM drain. The protocol
// lives in pooler/session, the upstream connections in pooler/pool, key checks in
// pooler/auth.
package pooler

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/pool"
	"github.com/edgepool/edgepool/pooler/session"
	"github.com/edgepool/edgepool/pooler/upstream"
)

// Server is one pooler process.
type Server struct {
	log      *slog.Logger
	cfgPath  string
	cfg      atomic.Pointer[config.Config]
	cert     atomic.Pointer[tls.Certificate]
	pool     *pool.Pool
	proxy    *session.Proxy
	guard    *auth.Guard
	metrics  *Metrics
	reloadMu sync.Mutex

	pgListener    net.Listener
	http          *httpListener // POST /sql and WebSocket (http.go)
	adminListener net.Listener
	adminServer   *http.Server
	sessions      sync.WaitGroup

	upstream   atomic.Pointer[pgconn.Config]
	nofile     uint64 // RLIMIT_NOFILE: client caps are lowered to fit it
	started    atomic.Bool
	upstreamOK atomic.Bool
	draining   atomic.Bool
	stopWarmup context.CancelFunc
}

// New builds a server from cfg without listening yet.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, nofile: fileLimit()}
	upstreamCfg, err := upstreamConfig(cfg)
	if err != nil {
		return nil, err
	}
	s.upstream.Store(upstreamCfg)
	s.metrics = newMetrics()
	s.pool = pool.New(poolSettings(cfg), pool.Options{
		// Reload may swap the upstream settings (credentials); each new connection uses the latest.
		Connect: func(ctx context.Context) (*pgconn.PgConn, error) {
			return pgconn.ConnectConfig(ctx, s.upstream.Load())
		},
		ObserveWait: s.metrics.observeWait,
		OnConnectError: func(err error) {
			var target upstream.Target
			if c := s.Config(); c != nil {
				target = upstream.Target{Host: c.Upstream.Host, Port: c.Upstream.Port, User: c.Upstream.User,
					Database: c.Upstream.Database, SSLMode: c.Upstream.SSLMode, RequireAuth: c.Upstream.RequireAuth}
			}
			f := upstream.Classify(err, target)
			log.Warn("upstream connection failed", "host", target.Host, "port", target.Port, "reason", f.Reason, "err", f.Message)
		},
	})
	s.pool.SetPaused(cfg.Paused)
	s.guard = auth.NewGuard(log, s.metrics.authFailed, guardSettings(cfg))
	if err := s.loadCert(cfg); err != nil {
		s.pool.Close()
		return nil, err
	}
	rt, err := s.runtimeFrom(cfg)
	if err != nil {
		s.pool.Close()
		return nil, err
	}
	s.proxy = session.NewProxy(s.pool, rt, log)
	s.proxy.Observer = s.metrics
	s.metrics.register(s)
	s.cfg.Store(cfg)
	return s, nil
}

// upstreamConfig turns the config's upstream settings into a pgconn config (TLS per sslMode
// with the CA file read now, require_auth, pool.Sock sockets).
func upstreamConfig(cfg *config.Config) (*pgconn.Config, error) {
	target, err := cfg.UpstreamTarget()
	if err != nil {
		return nil, err
	}
	c, err := upstream.ConnConfig(target)
	if err != nil {
		return nil, err
	}
	// TCP sockets the relay loop can take out of Go's netpoller while it holds them.
	c.DialFunc = pool.DialSock(c.DialFunc)
	return c, nil
}

// Pool is the process's upstream pool (for the HTTP and WebSocket transports).
func (s *Server) Pool() *pool.Pool { return s.pool }

// Proxy serves wire-protocol sessions (for the WebSocket transport: Proxy().ServeConn).
func (s *Server) Proxy() *session.Proxy { return s.proxy }

// Config is the config in force.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// Keyring is the API keys in force (for HTTP bearer checks).
func (s *Server) Keyring() *auth.Keyring { return s.proxy.Runtime().Keyring }

// PostgresAddr is the bound address of the wire-protocol listener (nil if disabled).
func (s *Server) PostgresAddr() net.Addr {
	if s.pgListener == nil {
		return nil
	}
	return s.pgListener.Addr()
}

// AdminAddr is the bound address of the admin listener (nil if disabled).
func (s *Server) AdminAddr() net.Addr {
	if s.adminListener == nil {
		return nil
	}
	return s.adminListener.Addr()
}

// Ready reports whether the pooler should receive traffic: listening, the upstream reached at
// least once, not draining.
func (s *Server) Ready() bool {
	return s.started.Load() && s.upstreamOK.Load() && !s.draining.Load()
}

func poolSettings(cfg *config.Config) pool.Settings {
	return pool.Settings{
		Size:              cfg.Pool.Size,
		QueryWaitTimeout:  cfg.Pool.QueryWaitTimeout.Duration,
		ConnectTimeout:    cfg.Pool.ConnectTimeout.Duration,
		Lifetime:          cfg.Pool.ServerLifetime.Duration,
		IdleTimeout:       cfg.Pool.ServerIdleTimeout.Duration,
		HealthCheckPeriod: cfg.Pool.HealthCheckPeriod.Duration,
		PreparedPerConn:   cfg.Pool.PreparedStatementsPerConn,
	}
}

func guardSettings(cfg *config.Config) auth.GuardSettings {
	return auth.GuardSettings{MaxFailuresPerSource: cfg.Auth.MaxFailuresPerSource, FailureWindow: cfg.Auth.FailureWindow.Duration}
}

func (s *Server) runtimeFrom(cfg *config.Config) (*session.Runtime, error) {
	ring, err := auth.NewKeyring(cfg.Keys, auth.DecoySecret([]byte(cfg.Auth.DecoySecret)))
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	limits := limitsFor(cfg, s.nofile)
	if limits.lowered {
		s.log.Warn("pool.maxClientConnections lowered to fit the file descriptor limit (RLIMIT_NOFILE)",
			"configured", cfg.Pool.MaxClientConnections, "inForce", limits.maxClients, "nofile", s.nofile)
	}
	rt := &session.Runtime{
		Keyring:                  ring,
		Database:                 cfg.Database,
		SessionMode:              cfg.Pool.Mode == config.ModeSession,
		PreferCleartext:          cfg.ClientAuthMethod == config.AuthPassword,
		AllowCleartextWithoutTLS: cfg.AllowCleartextWithoutTLS,
		MaxClients:               limits.maxClients,
		MaxAuthenticating:        limits.maxAuthenticating,
		AuthTimeout:              cfg.Pool.AuthTimeout.Duration,
		IdleTransactionTimeout:   cfg.Pool.IdleTransactionTimeout.Duration,
		MaxMessageBytes:          cfg.Pool.MaxMessageBytes,
		PreparedPerConn:          cfg.Pool.PreparedStatementsPerConn,
		PreparedStatementBytes:   cfg.Pool.PreparedStatementBytes,
		ClientStallTimeout:       cfg.Pool.ClientStallTimeout.Duration,
		RelayLoop:                cfg.Pool.RelayLoop,
		Guard:                    s.guard,
	}
	if cfg.TLS != nil {
		rt.TLS = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		}
	}
	return rt, nil
}

func (s *Server) loadCert(cfg *config.Config) error {
	if cfg.TLS == nil {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: load certificate: %w", err)
	}
	s.cert.Store(&cert)
	return nil
}

// Start binds the listeners and starts serving.
func (s *Server) Start() error {
	cfg := s.Config()
	if cfg.Listen.Admin != "" {
		l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", cfg.Listen.Admin)
		if err != nil {
			return fmt.Errorf("listen admin %s: %w", cfg.Listen.Admin, err)
		}
		s.adminListener = l
		s.adminServer = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = s.adminServer.Serve(l) }()
	}
	if cfg.Listen.Postgres != "" {
		l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", cfg.Listen.Postgres)
		if err != nil {
			s.closeAdmin()
			return fmt.Errorf("listen postgres %s: %w", cfg.Listen.Postgres, err)
		}
		s.pgListener = l
		go s.acceptLoop(l)
	}
	if err := s.startHTTP(cfg); err != nil {
		if s.pgListener != nil {
			_ = s.pgListener.Close()
		}
		s.closeAdmin()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopWarmup = cancel
	go s.warmup(ctx)
	s.started.Store(true)
	s.log.Info("pooler started", "postgres", addrString(s.PostgresAddr()), "admin", addrString(s.AdminAddr()),
		"database", cfg.Database, "mode", cfg.Pool.Mode, "poolSize", cfg.Pool.Size, "keys", len(cfg.Keys))
	return nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// warmup opens the first upstream connection so readiness reflects a reachable upstream.
func (s *Server) warmup(ctx context.Context) {
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, s.Config().Pool.ConnectTimeout.Duration)
		c, err := s.pool.Acquire(actx)
		cancel()
		if err == nil {
			c.Release()
			s.upstreamOK.Store(true)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Server) acceptLoop(l net.Listener) {
	var delay time.Duration
	var failures int
	var loggedAt time.Time
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors (or the like): free one by closing the connection that
			// has been logging in longest, and back off instead of spinning. New connections
			// wait in the kernel's listen queue meanwhile.
			evicted := (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && s.proxy.EvictOldestLogin()
			delay = min(max(2*delay, 5*time.Millisecond), 250*time.Millisecond)
			if evicted {
				delay = time.Millisecond
			}
			failures++
			if time.Since(loggedAt) > 10*time.Second {
				s.log.Warn("accept failed; backing off", "err", err, "failuresSinceLastLog", failures, "evictedALogin", evicted)
				loggedAt, failures = time.Now(), 0
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
			_ = tc.SetKeepAlive(true)
		}
		s.sessions.Add(1)
		s.proxy.ServeConnAsync(context.Background(), conn, session.Options{Transport: "tcp"}, func(error) { s.sessions.Done() })
	}
}

// Shutdown drains: readiness goes false, the listener closes (new connections are refused),
// idle clients are closed, clients inside a transaction finish it and are then closed; after
// the config's shutdown timeout (or ctx) the rest are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	if s.stopWarmup != nil {
		s.stopWarmup()
	}
	timeout := s.Config().Pool.ShutdownTimeout.Duration
	s.log.Info("draining", "timeout", timeout.String())
	if s.pgListener != nil {
		_ = s.pgListener.Close()
	}
	httpStopped := s.shutdownHTTP(timeout)
	s.proxy.Drain()
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-done:
	case <-timer.C:
		err = errors.New("drain timeout: closed remaining clients")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.proxy.CloseAll()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	<-httpStopped
	s.pool.Close()
	s.closeAdmin()
	s.log.Info("pooler stopped")
	return err
}

func (s *Server) closeAdmin() {
	if s.adminServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = s.adminServer.Shutdown(ctx)
		cancel()
	}
}
