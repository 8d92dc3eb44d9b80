package pooler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

var pg *testpg.Server

func TestMain(m *testing.M) {
	if cfg := os.Getenv(poolerProcessEnv); cfg != "" {
		// This binary re-run as a pooler process (process_test.go).
		if err := runPoolerProcess(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "pooler:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := testutil.RunWithPostgres(m, &pg, func(s *testpg.Server) error { return s.ExecErr("create database app") })
	if tlsPG != nil {
		tlsPG.Close()
	}
	os.Exit(code)
}

// testKey is an API key with its config entry.
type testKey struct {
	name, secret string
	entry        config.Key
}

var keyCache = map[string]testKey{}

func newTestKey(t testing.TB, name string) testKey {
	t.Helper()
	if k, ok := keyCache[name]; ok {
		return k
	}
	entry, secret, err := apikey.NewConfigKey(name)
	if err != nil {
		t.Fatal(err)
	}
	k := testKey{name: name, secret: secret, entry: entry}
	keyCache[name] = k
	return k
}

// harness is one pooler running through pooler.Run, as the binary runs it.
type harness struct {
	t       testing.TB
	srv     *pooler.Server
	cfg     *config.Config
	cfgPath string
	key     testKey
	cancel  context.CancelFunc
	done    chan error
	log     *testutil.SyncBuffer // everything the pooler logged (info and up)
}

func baseConfig(t testing.TB) *config.Config {
	cfg := config.Defaults()
	cfg.Listen = config.Listen{Postgres: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.Database = "app"
	cfg.Upstream = config.Upstream{Host: pg.Host, Port: pg.Port, Database: "app", User: pg.User,
		Password: pg.Password, SSLMode: "disable"}
	cfg.Pool.Size = 4
	cfg.Pool.QueryWaitTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Pool.ShutdownTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Pool.HealthCheckPeriod = config.Duration{Duration: time.Second}
	// make test runs the package once more with EDGEPOOL_TEST_RELAY_LOOP=0: the goroutine relay
	// (what TLS clients and hand-offs use) then carries every test's plain clients too.
	cfg.Pool.RelayLoop = os.Getenv("EDGEPOOL_TEST_RELAY_LOOP") != "0"
	cfg.Keys = []config.Key{newTestKey(t, "app").entry}
	return &cfg
}

func startPooler(t testing.TB, mutate func(*config.Config)) *harness {
	t.Helper()
	cfg := baseConfig(t)
	if mutate != nil {
		mutate(cfg)
	}
	dir := t.TempDir()
	h := &harness{t: t, cfg: cfg, cfgPath: filepath.Join(dir, config.FileName), key: newTestKey(t, "app"), done: make(chan error, 1),
		log: &testutil.SyncBuffer{}}
	h.writeConfig(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	started := make(chan *pooler.Server, 1)
	var logOut io.Writer = h.log
	level := slog.LevelInfo
	if os.Getenv("EDGEPOOL_TEST_LOG") != "" {
		logOut, level = io.MultiWriter(h.log, os.Stderr), slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	go func() {
		h.done <- pooler.Run(ctx, pooler.RunOptions{ConfigPath: h.cfgPath, Log: log,
			Started: func(s *pooler.Server) { started <- s }})
	}()
	select {
	case h.srv = <-started:
	case err := <-h.done:
		t.Fatalf("pooler exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("pooler did not start")
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Logf("pooler exited with: %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Error("pooler did not stop")
	}
}

// writeConfig replaces the config file atomically, as a Secret volume update does.
func (h *harness) writeConfig(cfg *config.Config) {
	h.t.Helper()
	data, err := cfg.Marshal()
	if err != nil {
		h.t.Fatal(err)
	}
	tmp := h.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.cfgPath); err != nil {
		h.t.Fatal(err)
	}
}

// reload applies the running config changed by mutate, as a config file change would.
func (h *harness) reload(t testing.TB, mutate func(*config.Config)) {
	t.Helper()
	cfg := *h.srv.Config()
	mutate(&cfg)
	if err := h.srv.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) port() int { return h.srv.PostgresAddr().(*net.TCPAddr).Port }

func (h *harness) adminURL(path string) string {
	return "http://" + h.srv.AdminAddr().String() + path
}

// dsn is a libpq URL through the pooler for key k.
func (h *harness) dsn(k testKey, extra string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/app?sslmode=disable%s", k.name, k.secret, h.port(), extra)
}

func (h *harness) connect(ctx context.Context, t testing.TB) *pgconn.PgConn {
	t.Helper()
	c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
	if err != nil {
		t.Fatalf("connect through pooler: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func exec1(ctx context.Context, t testing.TB, c *pgconn.PgConn, sql string) string {
	t.Helper()
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	last := res[len(res)-1]
	if len(last.Rows) == 0 {
		return last.CommandTag.String()
	}
	return string(last.Rows[0][0])
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if ok := asPgError(err, &pgErr); ok {
		return pgErr.Code
	}
	return ""
}

var _ = strconv.Itoa

func osWriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
