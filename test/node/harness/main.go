// Command harness runs what the node tests of the edge transports talk to: a throwaway
// PostgreSQL 15 (internal/testpg), the pooler's shared upstream pool, the wire-protocol session
// proxy on a TCP port, and the edge HTTP listener (POST /sql, WebSocket) on another, all on
// loopback and sharing one pool, with a freshly generated API key.
//
// It prints one JSON line describing the endpoints and the key, then runs until stdin closes
// or it gets SIGINT/SIGTERM, and removes everything it started. The key is throwaway, which is
// why printing it is fine here and nowhere else.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/config"
	"github.com/edgepool/edgepool/pooler/edge"
	"github.com/edgepool/edgepool/pooler/pool"
	"github.com/edgepool/edgepool/pooler/session"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// endpoints is the line the harness prints.
type endpoints struct {
	HTTP     string `json:"http"`     // host:port of the edge listener (POST /sql, WebSocket)
	Postgres string `json:"postgres"` // host:port of the wire-protocol (TCP) listener
	Admin    string `json:"admin"`    // host:port serving /metrics
	User     string `json:"user"`     // API key name
	Key      string `json:"key"`      // API key
	Database string `json:"database"` // database clients ask for
	PoolSize int    `json:"poolSize"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func run() error {
	poolSize := flag.Int("pool-size", 5, "upstream connections")
	queryWait := flag.Duration("query-wait", 10*time.Second, "query-wait timeout")
	flag.Parse()

	pg, err := testpg.New(testpg.WithSetting("max_connections", "50"))
	if err != nil {
		return err
	}
	defer pg.Close()

	key, err := apikey.Generate()
	if err != nil {
		return err
	}
	salt, err := apikey.NewSalt()
	if err != nil {
		return err
	}
	scram, err := apikey.NewSCRAMVerifier(key, salt, apikey.DefaultIterations)
	if err != nil {
		return err
	}
	keyring, err := auth.NewKeyring([]config.Key{{Name: "app", Verifiers: []config.Verifier{
		{SCRAM: scram.String(), SHA256: apikey.Digest(key), Fingerprint: apikey.Fingerprint(key)}}}})
	if err != nil {
		return err
	}

	dsn := pg.DSN("postgres")
	upstream := pool.New(pool.Settings{Size: *poolSize, QueryWaitTimeout: *queryWait, ConnectTimeout: 5 * time.Second},
		pool.Options{Connect: func(ctx context.Context) (*pgconn.PgConn, error) { return pgconn.Connect(ctx, dsn) }})
	defer upstream.Close()

	reg := prometheus.NewRegistry()
	metrics := edge.NewMetrics()
	if err := metrics.Register(reg); err != nil {
		return err
	}
	proxy := session.NewProxy(upstream, &session.Runtime{Keyring: keyring, Database: "postgres", MaxClients: 1000,
		AuthTimeout: 10 * time.Second, IdleTransactionTimeout: time.Minute, MaxMessageBytes: 64 << 20, PreparedPerConn: 256}, nil)
	defer proxy.CloseAll()
	pgLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer pgLn.Close()
	go func() {
		for {
			c, err := pgLn.Accept()
			if err != nil {
				return
			}
			go func() { _ = proxy.ServeConn(context.Background(), c, session.Options{}) }()
		}
	}()

	srv := edge.NewServer(edge.Options{
		Upstream: edge.PoolUpstream(upstream), Keys: edge.KeyringChecker(keyring), Database: "postgres",
		MaxRequestBytes: 1 << 20, MaxResponseBytes: 4 << 20, StatementTimeout: 30 * time.Second,
		Cache: edge.NewCache(16<<20, metrics), Metrics: metrics, WebSocket: edge.WebSocketSessions(proxy),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})

	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	adminSrv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
	go httpSrv.Serve(httpLn)
	go adminSrv.Serve(adminLn)
	defer httpSrv.Close()
	defer adminSrv.Close()

	line, _ := json.Marshal(endpoints{HTTP: httpLn.Addr().String(), Postgres: pgLn.Addr().String(), Admin: adminLn.Addr().String(),
		User: "app", Key: key, Database: "postgres", PoolSize: *poolSize})
	fmt.Println(string(line))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	<-ctx.Done()
	return nil
}
