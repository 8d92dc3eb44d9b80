package pooler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler"
	"github.com/edgepool/edgepool/pooler/config"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAdminEndpoints(t *testing.T) {
	h := startPooler(t, nil)
	waitFor(t, "readiness", 5*time.Second, func() bool { code, _ := httpGet(t, h.adminURL("/readyz")); return code == 200 })
	if code, _ := httpGet(t, h.adminURL("/healthz")); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	exec1(ctx, t, c, "select 1")
	_, _ = c.Exec(ctx, "select 1/0").ReadAll()

	code, body := httpGet(t, h.adminURL("/debug/pools"))
	var report pooler.PoolsReport
	if code != 200 || json.Unmarshal([]byte(body), &report) != nil {
		t.Fatalf("/debug/pools = %d %s", code, body)
	}
	if report.Database != "app" || report.Mode != "transaction" || report.Clients.Clients != 1 || report.Servers.Total < 1 || !report.Ready {
		t.Fatalf("/debug/pools report: %s", body)
	}
	_, metrics := httpGet(t, h.adminURL("/metrics"))
	for _, want := range []string{`edgepool_clients{state="idle"} 1`, `edgepool_servers{state="idle"}`,
		"edgepool_pool_wait_seconds_bucket", "edgepool_transactions_total", `edgepool_server_errors_total{class="22"} 1`,
		"edgepool_ready 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, h.key.secret) || strings.Contains(body, pg.Password) {
		t.Fatal("a secret leaked into the admin endpoints")
	}
}

// A key removed from the config file is refused for new connections; its open sessions
// carry on.
func TestKeyRemovedOnReload(t *testing.T) {
	ci := newTestKey(t, "ci")
	h := startPooler(t, func(c *config.Config) { c.Keys = append(c.Keys, ci.entry) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	open, err := pgconn.Connect(ctx, h.dsn(ci, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	exec1(ctx, t, open, "begin")

	cfg := *h.cfg
	cfg.Keys = []config.Key{h.key.entry}
	h.writeConfig(&cfg)
	waitFor(t, "the removed key to be refused", 5*time.Second, func() bool {
		c, err := pgconn.Connect(ctx, h.dsn(ci, ""))
		if err == nil {
			c.Close(ctx)
			return false
		}
		return pgCode(err) == "28P01"
	})
	// The open session finishes its transaction and keeps working.
	exec1(ctx, t, open, "select 1")
	exec1(ctx, t, open, "commit")
	if got := exec1(ctx, t, open, "select 2"); got != "2" {
		t.Fatalf("open session after key removal: %q", got)
	}
	// The remaining key still works, and a bad file keeps the running config.
	h.connect(ctx, t)
	if err := writeRaw(h, "{not json"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	h.connect(ctx, t)
}

func writeRaw(h *harness, s string) error {
	cfg := *h.cfg
	_ = cfg
	return osWriteFile(h.cfgPath, []byte(s))
}

// Pool size and pause reload live.
func TestReloadPoolSizeAndPause(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	cfg := *h.cfg
	cfg.Pool.Size = 2
	cfg.Paused = true
	cfg.Pool.QueryWaitTimeout = config.Duration{Duration: 300 * time.Millisecond}
	h.writeConfig(&cfg)
	waitFor(t, "pool resize", 5*time.Second, func() bool { return h.srv.Pool().Stats().Size == 2 })
	if _, err := c.Exec(ctx, "select 1").ReadAll(); pgCode(err) != "53300" {
		t.Fatalf("paused pool: want 53300, got %v", err)
	}
	cfg.Paused = false
	h.writeConfig(&cfg)
	waitFor(t, "unpause", 5*time.Second, func() bool { return !h.srv.Pool().Stats().Paused })
	exec1(ctx, t, c, "select 1")
}

// SIGTERM during a transaction (Run's context ends): readiness goes false, new connections
// are refused, the transaction commits, and Run returns promptly.
func TestDrainFinishesTransaction(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	waitFor(t, "readiness", 5*time.Second, func() bool { code, _ := httpGet(t, h.adminURL("/readyz")); return code == 200 })
	setup := h.connect(ctx, t)
	exec1(ctx, t, setup, "create table if not exists drained (v int); truncate drained")
	idle := h.connect(ctx, t)
	exec1(ctx, t, idle, "select 1")

	inTx := h.connect(ctx, t)
	exec1(ctx, t, inTx, "begin")
	exec1(ctx, t, inTx, "insert into drained values (7)")

	h.cancel() // what SIGTERM does in cmd/edgepool
	waitFor(t, "readiness false", 2*time.Second, func() bool {
		resp, err := http.Get(h.adminURL("/readyz"))
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	waitFor(t, "new connections refused", 2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", h.srv.PostgresAddr().String(), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	// The idle client is closed by the drain.
	waitFor(t, "idle client closed", 2*time.Second, func() bool {
		_, err := idle.Exec(ctx, "select 1").ReadAll()
		return err != nil
	})
	// The transaction still commits.
	exec1(ctx, t, inTx, "insert into drained values (8)")
	exec1(ctx, t, inTx, "commit")
	start := time.Now()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after the last transaction ended")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("exit took %v", d)
	}
	var sum string
	if err := pg.ExecErr("select 1"); err != nil {
		t.Fatal(err)
	}
	direct, err := pgconn.Connect(ctx, pg.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	sum = exec1(ctx, t, direct, "select sum(v) from drained")
	if sum != "15" {
		t.Fatalf("committed rows sum to %q, want 15", sum)
	}
}

// Malformed protocol bytes close that one client, never the process.
func TestMalformedClientClosesOnlyThatClient(t *testing.T) {
	h := startPooler(t, func(c *config.Config) { c.Pool.AuthTimeout = config.Duration{Duration: time.Second} })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	garbage := [][]byte{
		{0, 0, 0, 3},                      // startup length below the minimum
		{0x7f, 0xff, 0xff, 0xff, 0, 3},    // startup length far above 10,000
		{0, 0, 0, 8, 0, 9, 0, 0},          // protocol 9.0
		{0, 0, 0, 10, 0, 3, 0, 0, 'u', 0}, // parameter name without a value
		{0, 0, 0, 12, 0, 3},               // incomplete packet: closed at the auth timeout
	}
	for _, g := range garbage {
		c, err := net.Dial("tcp", h.srv.PostgresAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(g)
		_ = c.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
		_, err = io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("pooler kept a client open after % x", g)
		}
		c.Close()
	}
	// After authentication: an oversized and an unknown message.
	for _, msg := range [][]byte{{'Q', 0x7f, 0, 0, 0}, {'Z', 0, 0, 0, 4}, {'P', 0, 0, 0, 6, 'x', 'y'}} {
		c := h.connect(ctx, t)
		_, _ = c.Conn().Write(msg)
		_, err := c.Exec(ctx, "select 1").ReadAll()
		if err == nil {
			t.Errorf("session survived % x", msg)
		}
	}
	c := h.connect(ctx, t)
	if got := exec1(ctx, t, c, "select 1"); got != "1" {
		t.Fatal("pooler broken after malformed clients")
	}
}

// The operator delivers new upstream credentials by rewriting the config file: the pooler
// applies them without a restart. A password change keeps the open upstream sessions; a
// different role retires them, so later work runs as the new role.
func TestReloadUpstreamCredentials(t *testing.T) {
	pg.Exec(t, "create role reload_a login password 'first'")
	pg.Exec(t, "create role reload_b login password 'other'")
	t.Cleanup(func() {
		_ = pg.ExecErr("select pg_terminate_backend(pid) from pg_stat_activity where usename in ('reload_a', 'reload_b')")
		_ = pg.ExecErr("drop role if exists reload_a")
		_ = pg.ExecErr("drop role if exists reload_b")
	})
	h := startPooler(t, func(c *config.Config) {
		c.Upstream.User, c.Upstream.Password = "reload_a", "first"
		c.Pool.QueryWaitTimeout = config.Duration{Duration: time.Second}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	if got := exec1(ctx, t, c, "select current_user"); got != "reload_a" {
		t.Fatalf("current_user = %q", got)
	}

	// New password in PostgreSQL, every upstream session cut (a client whose upstream
	// connection dies is closed, as in PgBouncer): the old password no longer works.
	pg.Exec(t, "alter role reload_a password 'second'")
	pg.Exec(t, "select pg_terminate_backend(pid) from pg_stat_activity where usename = 'reload_a'")
	waitFor(t, "the old password refused", 5*time.Second, func() bool {
		probe := h.connect(ctx, t)
		defer probe.Close(ctx)
		_, err := probe.Exec(ctx, "select 1").ReadAll()
		return pgCode(err) == "53300"
	})
	cfg := *h.cfg
	cfg.Upstream.Password = "second"
	h.writeConfig(&cfg) // picked up by the file watch, not at once
	waitFor(t, "queries with the new password", 5*time.Second, func() bool {
		probe := h.connect(ctx, t)
		defer probe.Close(ctx)
		_, err := probe.Exec(ctx, "select 1").ReadAll()
		return err == nil
	})
	c = h.connect(ctx, t)
	exec1(ctx, t, c, "select 1")

	// A different role: idle connections of the old role are retired, not reused.
	cfg.Upstream.User, cfg.Upstream.Password = "reload_b", "other"
	h.writeConfig(&cfg)
	waitFor(t, "queries as the new role", 5*time.Second, func() bool {
		res, err := c.Exec(ctx, "select current_user").ReadAll()
		return err == nil && len(res) == 1 && len(res[0].Rows) == 1 && string(res[0].Rows[0][0]) == "reload_b"
	})
	for range 5 {
		if got := exec1(ctx, t, c, "select current_user"); got != "reload_b" {
			t.Fatalf("after the role change a query ran as %q", got)
		}
	}
}

// A malformed message that arrives while the pump is still relaying a large result to a client
// that is not reading: the session must answer FATAL 08P01 and close, and give its upstream
// connection back, instead of deadlocking between the client writer and the session state.
func TestMalformedMessageDuringRelayDoesNotDeadlock(t *testing.T) {
	h := startPooler(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	exec1(ctx, t, c, "begin") // attached: every later message goes through forward
	hj, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hj.Conn.Close()
	// Tens of MB of rows fill the socket buffers while the client does not read, so the pump
	// blocks in its write holding the client writer; then a Bind with no statement name
	// terminator reaches the session, which holds its state lock while it handles it.
	if _, err := hj.Conn.Write(appendMessage(nil, 'Q', []byte("select repeat('x', 1000) from generate_series(1, 50000)\x00"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the query is upstream and the pump is stuck writing
	if _, err := hj.Conn.Write(appendMessage(nil, 'B', []byte("portal-without-terminator"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the session takes the Bind while the pump is stuck
	_ = hj.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	data, err := io.ReadAll(hj.Conn)
	if err != nil {
		t.Fatalf("session did not close after the malformed Bind (%d bytes read): %v", len(data), err)
	}
	if !strings.Contains(string(data), "08P01") {
		t.Fatalf("no FATAL 08P01 among %d bytes", len(data))
	}
	waitFor(t, "upstream connection back in the pool", 5*time.Second, func() bool {
		return h.srv.Pool().Stats().Active == 0
	})
	other := h.connect(ctx, t)
	if got := exec1(ctx, t, other, "select 1"); got != "1" {
		t.Fatalf("pool unusable after the malformed client: %q", got)
	}
}

// appendMessage frames one protocol message (type, int32 length, body).
func appendMessage(dst []byte, typ byte, body []byte) []byte {
	n := len(body) + 4
	return append(append(dst, typ, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)), body...)
}

// TestGarbageNeverReachesUpstream: limit proved — client messages are checked before they are
// forwarded. 200 authenticated clients each send a message with a valid type byte and a
// malformed body; every one is closed with 08P01 and not one upstream connection is opened or
// used for them.
func TestGarbageNeverReachesUpstream(t *testing.T) {
	h := startPooler(t, func(c *config.Config) { c.Pool.Size = 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	warm := h.connect(ctx, t)
	exec1(ctx, t, warm, "select 1")
	connectsBefore := metricValue(t, h, "edgepool_upstream_connects_total")
	garbage := [][]byte{
		appendMessage(nil, 'Q', []byte("select 1")),                     // no NUL
		appendMessage(nil, 'Q', []byte("select 1\x00trailing")),         // bytes after the string
		appendMessage(nil, 'P', []byte("s\x00select 1\x00\x00\x05")),    // 5 parameter types announced, none sent
		appendMessage(nil, 'B', []byte("\x00\x00\x00\x00\x00\x01\x00")), // parameter count cut short
		appendMessage(nil, 'E', []byte("\x00\x00")),                     // row limit cut short
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := range 200 {
		wg.Go(func() {
			c, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
			if err != nil {
				t.Errorf("connect: %v", err)
				return
			}
			defer c.Close(ctx)
			_, _ = c.Conn().Write(garbage[i%len(garbage)])
			msg, err := c.ReceiveMessage(ctx) // pgconn turns a FATAL into its error
			code := fmt.Sprintf("%T %v", msg, err)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				code = pgErr.Severity + " " + pgErr.Code
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes["FATAL 08P01"] != 200 {
		t.Fatalf("answers to garbage: %v, want 200 × FATAL 08P01", codes)
	}
	if after := metricValue(t, h, "edgepool_upstream_connects_total"); after != connectsBefore {
		t.Fatalf("garbage opened %v upstream connections", after-connectsBefore)
	}
	if got := exec1(ctx, t, warm, "select 2"); got != "2" {
		t.Fatal("pooler broken after garbage")
	}
}
