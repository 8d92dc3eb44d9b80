package edge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/pool"
	"github.com/edgepool/edgepool/pooler/session"
)

// transports is one pooler's three transports over one shared pool: the session proxy on a
// TCP listener, and the edge handler (POST /sql and WebSocket) on an HTTP listener.
type transports struct {
	pool    *pool.Pool
	tcpAddr string
	http    *httptest.Server
}

func startTransports(t *testing.T, size int, wait time.Duration) *transports {
	t.Helper()
	p := newPool(t, size, wait)
	keys := testKeyChecker(t).(keyringChecker).k
	proxy := session.NewProxy(p, &session.Runtime{Keyring: keys, Database: "postgres", MaxClients: 100,
		AuthTimeout: 5 * time.Second, IdleTransactionTimeout: 30 * time.Second, MaxMessageBytes: 1 << 20,
		PreparedPerConn: 64}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = proxy.ServeConn(context.Background(), c, session.Options{}) }()
		}
	}()
	srv := NewServer(Options{Upstream: PoolUpstream(p), Keys: KeyringChecker(keys), Database: "postgres",
		StatementTimeout: 10 * time.Second, WebSocket: WebSocketSessions(proxy), CleartextAllowed: func() bool { return true }})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(proxy.CloseAll)
	return &transports{pool: p, tcpAddr: ln.Addr().String(), http: ts}
}

// upstreamConnections counts the current test's pool connections as Postgres sees them.
func upstreamConnections(t *testing.T) int {
	t.Helper()
	return pg.Count(t, "select count(*) from pg_stat_activity where application_name = $1", t.Name())
}

// connectTCP connects pgx to the proxy's TCP listener (SCRAM).
func (tr *transports) connectTCP(t *testing.T) *pgx.Conn {
	t.Helper()
	host, port, _ := net.SplitHostPort(tr.tcpAddr)
	c, err := pgx.Connect(context.Background(), "postgres://app:"+testKey+"@"+host+":"+port+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatalf("tcp connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// connectWebSocket connects pgx through a WebSocket to path (protocol bytes in binary frames).
func (tr *transports) connectWebSocket(t *testing.T, path string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig("postgres://app:" + testKey + "@localhost/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	wsURL := "ws" + strings.TrimPrefix(tr.http.URL, "http") + path
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := websocket.Dial(ctx, wsURL, nil)
		if err != nil {
			return nil, err
		}
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("websocket connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestWebSocketSession(t *testing.T) {
	tr := startTransports(t, 2, 2*time.Second)
	ctx := context.Background()
	c := tr.connectWebSocket(t, "/v2")
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sum int
	var name string
	// pgx prepares named statements: they go through the pooler's statement handling.
	if err := tx.QueryRow(ctx, "select $1::int + $2::int, $3::text", 40, 2, "ws").Scan(&sum, &name); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "sum", sum, 42)
	wantEqual(t, "name", name, "ws")
	for i := range 3 { // the prepared statement is reused across transactions
		if err := c.QueryRow(ctx, "select $1::int + $2::int, $3::text", i, 1, "again").Scan(&sum, &name); err != nil {
			t.Fatal(err)
		}
		wantEqual(t, "sum", sum, i+1)
	}

	// A wrong key is refused.
	cfg, _ := pgx.ParseConfig("postgres://app:ep_wrong@localhost/postgres?sslmode=disable")
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		wc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(tr.http.URL, "http")+"/v2", nil)
		if err != nil {
			return nil, err
		}
		return websocket.NetConn(context.Background(), wc, websocket.MessageBinary), nil
	}
	_, err = pgx.ConnectConfig(ctx, cfg)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong key over WebSocket: %v", err)
	}

	// Plain GET on a WebSocket path is not found.
	resp, err := http.Get(tr.http.URL + "/v2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantEqual(t, "plain GET", resp.StatusCode, http.StatusNotFound)
}

// TestSharedBudget holds both upstream connections of a pool of two from a TCP client and a
// WebSocket client inside transactions: an HTTP request then gets the query-wait timeout, and
// Postgres never sees more than two pooler connections. When one transaction ends, HTTP works.
func TestSharedBudget(t *testing.T) {
	tr := startTransports(t, 2, 700*time.Millisecond)
	ctx := context.Background()
	tcp := tr.connectTCP(t)
	ws := tr.connectWebSocket(t, "/")
	tcpTx, err := tcp.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tcpTx.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}
	wsTx, err := ws.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wsTx.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}

	resp, out := post(t, &httptest.Server{URL: tr.http.URL}, `{"query": "select 1"}`)
	if resp.StatusCode != http.StatusBadRequest || decode(t, out)["code"] != "53300" {
		t.Fatalf("HTTP with the budget used up: status %d: %s", resp.StatusCode, out)
	}
	wantEqual(t, "pool connections seen by Postgres", upstreamConnections(t), 2)

	if err := tcpTx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	resp, out = post(t, &httptest.Server{URL: tr.http.URL}, `{"query": "select 1 as one"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP after a transaction ended: status %d: %s", resp.StatusCode, out)
	}
	if err := wsTx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
