package pooler

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/config"
)

// Reload applies everything but the restart-only settings (config.RestartSettings: listeners,
// TLS on/off, HTTP on/off, the client-facing database, the pool mode; the operator rolls the pods
// for those, and changes to them are logged and ignored here): keys, pool size and timeouts,
// pause, auth method, TLS certificate files, the HTTP limits and cache, and the upstream
// settings (new upstream connections use them; when more than the password changed, idle
// connections are retired and lent ones are closed when their transaction ends).
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.Config()
	if changed := cfg.KeepRestartSettings(old); len(changed) > 0 {
		s.log.Warn("config changes that need a restart; keeping the running values", "settings", changed)
	}
	upstreamChanged := old.Upstream != cfg.Upstream || old.Pool.ConnectTimeout != cfg.Pool.ConnectTimeout
	var upstream *pgconn.Config
	if upstreamChanged {
		var err error
		if upstream, err = upstreamConfig(cfg); err != nil {
			return err
		}
	}
	if err := s.loadCert(cfg); err != nil {
		return err
	}
	rt, err := s.runtimeFrom(cfg)
	if err != nil {
		return err
	}
	s.guard.Update(guardSettings(cfg))
	s.proxy.SetRuntime(rt)
	if n := s.proxy.CloseRevoked(rt.Keyring, time.Now()); n > 0 {
		s.log.Info("closing sessions of disabled, removed or expired keys after their transaction", "sessions", n)
	}
	if upstreamChanged {
		s.upstream.Store(upstream)
		// Same server and role with a new password: the open sessions stay valid. Anything else
		// means the open connections talk to the wrong place or as the wrong role.
		sameIdentity := old.Upstream
		sameIdentity.Password = cfg.Upstream.Password
		if sameIdentity != cfg.Upstream {
			s.pool.RetireAll()
		}
		s.log.Info("upstream settings reloaded", "host", cfg.Upstream.Host, "port", cfg.Upstream.Port,
			"user", cfg.Upstream.User, "retired", sameIdentity != cfg.Upstream)
	}
	s.reloadHTTP(old, cfg)
	s.pool.Update(poolSettings(cfg))
	s.pool.SetPaused(cfg.Paused)
	s.cfg.Store(cfg)
	s.metrics.reloads.Inc()
	s.log.Info("config reloaded", "keys", len(cfg.Keys), "poolSize", cfg.Pool.Size, "paused", cfg.Paused)
	return nil
}

// ReloadFile re-reads the config file the server was started from. A bad file keeps the
// running config.
func (s *Server) ReloadFile() error {
	if s.cfgPath == "" {
		return fmt.Errorf("no config file")
	}
	cfg, err := config.Load(s.cfgPath)
	if err == nil {
		err = s.Reload(cfg)
	}
	if err != nil {
		s.metrics.reloadErrors.Inc()
		s.log.Error("config reload failed; keeping the running config", "err", err)
	}
	return err
}

// watch reloads when the config file changes. It watches the directory: a mounted Secret is
// updated by swapping the "..data" symlink, which never touches the file's own inode.
func (s *Server) watch(ctx context.Context, log *slog.Logger) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Error("config watch disabled", "err", err)
		return
	}
	defer w.Close()
	dir := filepath.Dir(s.cfgPath)
	if err := w.Add(dir); err != nil {
		log.Error("config watch disabled", "dir", dir, "err", err)
		return
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			base := filepath.Base(ev.Name)
			if base == filepath.Base(s.cfgPath) || base == "..data" {
				debounce = time.After(100 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.Warn("config watch error", "err", err)
		case <-debounce:
			debounce = nil
			_ = s.ReloadFile()
		}
	}
}

// RunOptions configure Run.
type RunOptions struct {
	ConfigPath string
	Log        *slog.Logger
	// Reload triggers a reload from the file (SIGHUP).
	Reload <-chan struct{}
	// Started, if set, is called once the server listens (tests use it to learn addresses).
	Started func(*Server)
}

// Run loads the config, serves until ctx ends (SIGTERM), then drains.
func Run(ctx context.Context, opts RunOptions) error {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	s.cfgPath = opts.ConfigPath
	if err := s.Start(); err != nil {
		s.pool.Close()
		return err
	}
	if opts.Started != nil {
		opts.Started(s)
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go s.watch(wctx, log)
	for {
		select {
		case <-ctx.Done():
			return s.Shutdown(context.Background())
		case <-opts.Reload:
			_ = s.ReloadFile()
		}
	}
}
