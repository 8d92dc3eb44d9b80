package pooler_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// postSQL sends one POST /sql with a bearer key and returns status and body.
func postSQL(t *testing.T, client *http.Client, url, key, body string) (int, string) {
	t.Helper()
	code, _, b := postWithKey(t, client, url, key, body)
	return code, b
}

// postWithKey sends a POST with a bearer key and the given "Name: value" headers and returns
// status, response headers and body.
func postWithKey(t *testing.T, client *http.Client, url, key, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		req.Header.Set(name, strings.TrimSpace(value))
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestHTTPListenerServesSQLAndFollowsKeyReload(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.HTTP.Cache.Enabled = true
		c.AllowCleartextWithoutTLS = true // plain HTTP on loopback
	})
	url := "http://" + h.srv.HTTPAddr().String() + "/sql"
	code, body := postSQL(t, http.DefaultClient, url, h.key.secret, `{"query": "select current_database() as db"}`)
	if code != http.StatusOK || !strings.Contains(body, `"rows":[{"db":"app"}]`) {
		t.Fatalf("POST /sql: %d %s", code, body)
	}

	// A key added by a config reload works over HTTP without a restart.
	extra := newTestKey(t, "reloaded")
	cfg := *h.cfg
	cfg.Keys = append(append([]config.Key(nil), cfg.Keys...), extra.entry)
	reloads := metricValue(t, h, "edgepool_config_reloads_total")
	h.writeConfig(&cfg)
	testutil.Eventually(t, "the config reload", 10*time.Second, func() bool {
		return metricValue(t, h, "edgepool_config_reloads_total") > reloads
	})
	if code, body = postSQL(t, http.DefaultClient, url, extra.secret, `{"query": "select 1"}`); code != http.StatusOK {
		t.Fatalf("reloaded key refused over HTTP: %d %s", code, body)
	}

	resp, err := http.Get(h.adminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"edgepool_http_requests_total", "edgepool_http_request_duration_seconds", "edgepool_websocket_sessions_active"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("admin /metrics lacks %s", name)
		}
	}
}

func TestHTTPListenerUsesTLS(t *testing.T) {
	tf := testutil.ServerTLS(t)
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.TLS = &config.TLS{CertFile: tf.CertFile, KeyFile: tf.KeyFile}
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tf.Roots, ServerName: "localhost"}}}
	url := "https://" + h.srv.HTTPAddr().String() + "/sql"
	code, body := postSQL(t, client, url, h.key.secret, `{"query": "select 1 as one"}`)
	if code != http.StatusOK || !strings.Contains(body, `"rows":[{"one":1}]`) {
		t.Fatalf("POST /sql over TLS: %d %s", code, body)
	}
	// Postgres over wss://: the WebSocket's TLS carries a cleartext-password session.
	cfg, err := pgx.ParseConfig("postgres://app:" + h.key.secret + "@localhost/app?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = func(ctx context.Context, _, _ string) (net.Conn, error) {
		c, _, err := websocket.Dial(ctx, "wss://"+h.srv.HTTPAddr().String()+"/v2", &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			return nil, err
		}
		return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
	}
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgx over wss: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "select $1::int * 2", 21).Scan(&n); err != nil || n != 42 {
		t.Fatalf("query over wss: %v (%d)", err, n)
	}

	// Plain HTTP on the TLS port is refused.
	plain, err := http.Post("http://"+h.srv.HTTPAddr().String()+"/sql", "application/json", strings.NewReader(`{}`))
	if err == nil {
		defer plain.Body.Close()
		if plain.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP accepted on the TLS listener")
		}
	}
}

// TestHTTPCacheFollowsReload: the cache settings apply live. With the cache off a request asking
// for max-age is executed every time; after a reload that turns the cache on, the same request is
// answered from the cache; a reload that changes only an unrelated setting keeps the entries.
func TestHTTPCacheFollowsReload(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.AllowCleartextWithoutTLS = true // plain HTTP on loopback
	})
	url := "http://" + h.srv.HTTPAddr().String() + "/sql"
	cacheStatus := func() string {
		t.Helper()
		code, header, body := postWithKey(t, http.DefaultClient, url, h.key.secret, `{"query": "select 42 as answer"}`,
			"Cache-Control: max-age=60")
		if code != http.StatusOK || !strings.Contains(body, `"answer":42`) {
			t.Fatalf("POST /sql: %d %s", code, body)
		}
		return header.Get("Edgepool-Cache")
	}
	if got := cacheStatus(); got == "hit" {
		t.Fatalf("cache off, yet %q", got)
	}
	h.reload(t, func(c *config.Config) { c.HTTP.Cache.Enabled = true })
	if got := cacheStatus(); got != "miss" {
		t.Fatalf("first request after the cache was turned on: %q, want miss", got)
	}
	if got := cacheStatus(); got != "hit" {
		t.Fatalf("repeat within max-age: %q, want hit", got)
	}
	h.reload(t, func(c *config.Config) { c.HTTP.MaxRequestBytes = 1 << 20 })
	if got := cacheStatus(); got != "hit" {
		t.Fatalf("after a reload that left the cache settings alone: %q, want hit", got)
	}
}
