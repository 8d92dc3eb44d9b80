package pooler_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// getWithKey sends a GET with a bearer key (none when empty) and returns status and body.
func getWithKey(t *testing.T, client *http.Client, url, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawPlan is the body of a $queryRaw / $executeRaw request as the Prisma client posts it.
func rawPlan(kind, sql string) string {
	op := "queryRaw"
	if kind == "execute" {
		op = "executeRaw"
	}
	return `{"operation":"` + op + `","params":{},"plan":{"type":"` + kind +
		`","args":{"type":"rawSql","sql":"` + sql + `","args":[],"argTypes":[]}}}`
}

func TestAccelerateOnHTTPListener(t *testing.T) {
	tf := testutil.ServerTLS(t)
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.HTTP.Cache.Enabled = true
		c.TLS = &config.TLS{CertFile: tf.CertFile, KeyFile: tf.KeyFile}
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tf.Roots, ServerName: "localhost"}}}
	base := "https://" + h.srv.HTTPAddr().String()

	code, body := getWithKey(t, client, base+"/connection-info", h.key.secret)
	if code != http.StatusOK || body != `{"provider":"postgres","connectionInfo":{"supportsRelationJoins":true}}` {
		t.Fatalf("GET /connection-info: %d %s", code, body)
	}
	if code, body = getWithKey(t, client, base+"/connection-info", "wrong"); code != http.StatusUnauthorized ||
		!strings.Contains(body, `"code":"P6002"`) {
		t.Fatalf("wrong key: %d %s", code, body)
	}
	code, body = postSQL(t, client, base+"/query", h.key.secret, rawPlan("query", "select current_database() as db"))
	if code != http.StatusOK || body != `{"data":{"columns":["db"],"types":["string"],"rows":[["app"]]}}` {
		t.Fatalf("POST /query: %d %s", code, body)
	}
	// The edge transports still answer beside it.
	if code, body = postSQL(t, client, base+"/sql", h.key.secret, `{"query": "select 1 as one"}`); code != http.StatusOK {
		t.Fatalf("POST /sql next to the Accelerate routes: %d %s", code, body)
	}

	resp, err := http.Get(h.adminURL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"edgepool_accelerate_requests_total", "edgepool_accelerate_transactions_open"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("admin /metrics lacks %s", name)
		}
	}
}

func TestAccelerateDisabled(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.HTTP.Accelerate.Enabled = false
	})
	code, body := postSQL(t, http.DefaultClient, "http://"+h.srv.HTTPAddr().String()+"/query", h.key.secret, rawPlan("query", "select 1"))
	if code == http.StatusOK {
		t.Fatalf("disabled endpoint answered: %s", body)
	}
}

// A drain rolls back the interactive transactions that are still open and returns their
// connections: no request can reach them once the HTTP listener has stopped.
func TestAccelerateDrainRollsBackOpenTransactions(t *testing.T) {
	if err := pg.ExecErr("create table if not exists accel_drain (id int)"); err != nil {
		t.Fatal(err)
	}
	h := startPooler(t, func(c *config.Config) {
		c.Upstream.Database = "postgres"
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.AllowCleartextWithoutTLS = true // plain HTTP on loopback
	})
	base := "http://" + h.srv.HTTPAddr().String()
	code, body := postSQL(t, http.DefaultClient, base+"/transaction/start", h.key.secret, `{"maxWait":2000,"timeout":10000}`)
	if code != http.StatusOK {
		t.Fatalf("start: %d %s", code, body)
	}
	id := strings.Split(body, `"`)[3]
	if code, body = postSQL(t, http.DefaultClient, base+"/transaction/"+id+"/query", h.key.secret,
		rawPlan("execute", "insert into accel_drain values (1)")); code != http.StatusOK || body != `{"data":1}` {
		t.Fatalf("insert in the transaction: %d %s", code, body)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	inTx := func() int {
		var n int
		if err := conn.QueryRow(ctx, `select count(*) from pg_stat_activity where state = 'idle in transaction'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := inTx(); n != 1 {
		t.Fatalf("%d sessions idle in transaction while the transaction is open, want 1", n)
	}

	start := time.Now()
	h.cancel() // SIGTERM: drain and exit
	err = <-h.done
	h.done <- err // for the cleanup's stop
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("drain with an open interactive transaction took %v", took)
	}
	if n := inTx(); n != 0 {
		t.Errorf("%d sessions still idle in transaction after the drain", n)
	}
	var rows int
	if err := conn.QueryRow(ctx, "select count(*) from accel_drain").Scan(&rows); err != nil || rows != 0 {
		t.Errorf("the open transaction's insert is visible after the drain (%d rows, %v)", rows, err)
	}
}

// An interactive transaction holds one connection of the same budget as every other
// transport: with a pool of one, a TCP client waits for it.
func TestAccelerateSharesTheConnectionBudget(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.AllowCleartextWithoutTLS = true // plain HTTP on loopback
		c.Pool.Size = 1
		c.Pool.QueryWaitTimeout = config.Duration{Duration: 300 * time.Millisecond}
	})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "postgres://app:"+h.key.secret+"@"+h.srv.PostgresAddr().String()+"/app?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	base := "http://" + h.srv.HTTPAddr().String()
	code, body := postSQL(t, http.DefaultClient, base+"/transaction/start", h.key.secret, `{"maxWait":2000,"timeout":10000}`)
	if code != http.StatusOK {
		t.Fatalf("start: %d %s", code, body)
	}
	id := strings.Split(body, `"`)[3]
	var one int
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err == nil || !strings.Contains(err.Error(), "53300") {
		t.Fatalf("a TCP query got a connection while the transaction held the only one: %v", err)
	}
	// So does another Prisma request, answered with Prisma's code for it.
	if code, body = postSQL(t, http.DefaultClient, base+"/query", h.key.secret, rawPlan("query", "select 1")); code != http.StatusBadRequest ||
		!strings.Contains(body, `"code":"P2037"`) {
		t.Errorf("query beside the transaction: %d %s", code, body)
	}
	if code, body = postSQL(t, http.DefaultClient, base+"/transaction/"+id+"/commit", h.key.secret, ""); code != http.StatusOK {
		t.Fatalf("commit: %d %s", code, body)
	}
	if err := conn.QueryRow(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("TCP query after the commit: %v", err)
	}
}

// TestAccelerateCacheFollowsReload: the Accelerate endpoint uses the query cache in force, like
// POST /sql: off at start, a request with a cache strategy is run every time; after a reload
// that turns the cache on, a repeat is answered from it.
func TestAccelerateCacheFollowsReload(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.AllowCleartextWithoutTLS = true // plain HTTP on loopback
	})
	url := "http://" + h.srv.HTTPAddr().String() + "/query"
	body := strings.Replace(rawPlan("query", "select 42 as answer"), `"queryRaw"`, `"findMany"`, 1)
	cacheStatus := func() string {
		t.Helper()
		code, header, b := postWithKey(t, http.DefaultClient, url, h.key.secret, body, "Cache-Control: max-age=60")
		if code != http.StatusOK || !strings.Contains(b, `[[42]]`) {
			t.Fatalf("POST /query: %d %s", code, b)
		}
		return header.Get("Accelerate-Cache-Status")
	}
	if got := cacheStatus(); got != "none" {
		t.Fatalf("cache off: Accelerate-Cache-Status %q, want none", got)
	}
	h.reload(t, func(c *config.Config) { c.HTTP.Cache.Enabled = true })
	if got := cacheStatus(); got != "miss" {
		t.Fatalf("first request after the cache was turned on: %q, want miss", got)
	}
	if got := cacheStatus(); got != "ttl" {
		t.Fatalf("repeat within max-age: %q, want ttl", got)
	}
	h.reload(t, func(c *config.Config) { c.HTTP.Cache.Enabled = false })
	if got := cacheStatus(); got != "none" {
		t.Fatalf("after the cache was turned off: %q, want none", got)
	}
}

// TestAccelerateBodyTimeoutFollowsReload: http.bodyReadTimeout applies live to the Accelerate
// endpoint too. Started with a minute, reloaded to 200 ms: a request whose body stops after
// one byte is answered 408 well before the old bound.
func TestAccelerateBodyTimeoutFollowsReload(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Listen.HTTP, c.HTTP.Enabled, c.AllowCleartextWithoutTLS = "127.0.0.1:0", true, true
		c.HTTP.BodyReadTimeout = config.Duration{Duration: time.Minute}
	})
	h.reload(t, func(c *config.Config) { c.HTTP.BodyReadTimeout = config.Duration{Duration: 200 * time.Millisecond} })
	c, err := net.Dial("tcp", h.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n{", h.key.secret)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(status, " 408 ") {
		t.Fatalf("a stalled body after the reload: %q, %v; want 408 within the new 200 ms bound", status, err)
	}
}
