package pooler_test

import (
	"context"
	"encoding/binary"
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

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler"
	"github.com/edgepool/edgepool/pooler/apikey"
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

func TestAdminEndpoints(t *testing.T) {
	h := startPooler(t, nil)
	testutil.Eventually(t, "readiness", 5*time.Second, func() bool { code, _ := httpGet(t, h.adminURL("/readyz")); return code == 200 })
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

// TestRevokedKeysSessionsCloseAfterTheirTransaction: limit proved — sessions of keys that
// were removed, disabled (the operator leaves them out), rotated out or expired are closed at
// the next reload: an idle one within 2 s, one inside a transaction when it ends (it can still
// commit); sessions of valid keys and of the new key of a rotation carry on; new connections
// with a revoked key are refused; a bad file keeps the running config.
func TestRevokedKeysSessionsCloseAfterTheirTransaction(t *testing.T) {
	for _, mode := range []string{config.ModeTransaction, config.ModeSession} {
		t.Run(mode, func(t *testing.T) {
			ci := newTestKey(t, "ci")
			salt, _ := apikey.NewSalt()
			rotNew, rotNewEntry := keyWithSalt(t, salt, nil)
			later := time.Now().Add(time.Hour)
			rotOld, rotOldEntry := keyWithSalt(t, salt, &later)
			rot := config.Key{Name: "rot", Verifiers: []config.Verifier{rotNewEntry, rotOldEntry}}
			h := startPooler(t, func(c *config.Config) {
				c.Pool.Mode = mode
				c.Pool.Size = 8 // session mode: every session holds one
				c.Keys = append(c.Keys, ci.entry, rot)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			connect := func(user, secret string) *pgconn.PgConn {
				c, err := pgconn.Connect(ctx, h.dsn(testKey{name: user, secret: secret}, ""))
				if err != nil {
					t.Fatalf("connect as %s: %v", user, err)
				}
				t.Cleanup(func() { c.Close(context.Background()) })
				exec1(ctx, t, c, "select 1")
				return c
			}
			ciIdle, ciInTx := connect("ci", ci.secret), connect("ci", ci.secret)
			rotOldIdle, rotNewIdle := connect("rot", rotOld), connect("rot", rotNew)
			appIdle := connect(h.key.name, h.key.secret)
			exec1(ctx, t, ciInTx, "begin")
			exec1(ctx, t, ciInTx, "select 1")

			// Remove ci; rotate rot (its previous key leaves).
			cfg := *h.cfg
			cfg.Keys = []config.Key{h.key.entry, {Name: "rot", Verifiers: []config.Verifier{rotNewEntry}}}
			reloaded := time.Now()
			h.writeConfig(&cfg)
			for name, c := range map[string]*pgconn.PgConn{"ci idle": ciIdle, "rot previous key idle": rotOldIdle} {
				code, took := closedWith(t, c, reloaded)
				t.Logf("%s: closed with %s %v after the reload", name, code, took.Round(time.Millisecond))
				if code != "57P01" || took > 2*time.Second {
					t.Fatalf("%s: closed with %q after %v, want 57P01 within 2 s", name, code, took)
				}
			}
			// The transaction in flight finishes; then its session closes.
			exec1(ctx, t, ciInTx, "select 2")
			exec1(ctx, t, ciInTx, "commit")
			if code, _ := closedWith(t, ciInTx, time.Now()); code != "57P01" {
				t.Fatalf("ci session after its transaction: %q, want 57P01", code)
			}
			for name, c := range map[string]*pgconn.PgConn{"app": appIdle, "rot new key": rotNewIdle} {
				if got := exec1(ctx, t, c, "select 3"); got != "3" {
					t.Fatalf("%s session after the reload: %q", name, got)
				}
			}
			if _, err := pgconn.Connect(ctx, h.dsn(ci, "")); pgCode(err) != "28P01" {
				t.Fatalf("removed key at login: %v", err)
			}
			if _, err := pgconn.Connect(ctx, h.dsn(testKey{name: "rot", secret: rotOld}, "")); pgCode(err) != "28P01" {
				t.Fatalf("rotated-out key at login: %v", err)
			}

			// Expiry: a reload after the new key's notAfter closes its sessions too.
			past := time.Now().Add(-time.Second)
			expired := rotNewEntry
			expired.NotAfter = &past
			cfg.Keys = []config.Key{h.key.entry, {Name: "rot", Verifiers: []config.Verifier{expired}}}
			reloaded = time.Now()
			h.writeConfig(&cfg)
			if code, took := closedWith(t, rotNewIdle, reloaded); code != "57P01" || took > 2*time.Second {
				t.Fatalf("expired key's session: %q after %v", code, took)
			}

			// A bad file keeps the running config.
			if err := writeRaw(h, "{not json"); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, "the bad file to be rejected", 5*time.Second, func() bool {
				return metricValue(t, h, "edgepool_config_reload_errors_total") >= 1
			})
			if got := exec1(ctx, t, appIdle, "select 4"); got != "4" {
				t.Fatal("valid session broken by a bad config file")
			}
		})
	}
}

// keyWithSalt makes a key and its verifier with the given salt (keys of one name share it).
func keyWithSalt(t *testing.T, salt []byte, notAfter *time.Time) (string, config.Verifier) {
	t.Helper()
	secret, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	v, err := apikey.ConfigVerifier(secret, salt, apikey.DefaultIterations)
	if err != nil {
		t.Fatal(err)
	}
	v.NotAfter = notAfter
	return secret, v
}

// closedWith waits (up to 5 s) for the pooler to end a session and returns the SQLSTATE of
// the FATAL it sent and how long after since it arrived.
func closedWith(t *testing.T, c *pgconn.PgConn, since time.Time) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := c.ReceiveMessage(ctx) // pgconn returns a FATAL as its error
	took := time.Since(since)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code, took
	}
	t.Fatalf("session not closed with a FATAL: %T %v", msg, err)
	return "", took
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
	testutil.Eventually(t, "pool resize", 5*time.Second, func() bool { return h.srv.Pool().Stats().Size == 2 })
	if _, err := c.Exec(ctx, "select 1").ReadAll(); pgCode(err) != "53300" {
		t.Fatalf("paused pool: want 53300, got %v", err)
	}
	cfg.Paused = false
	h.writeConfig(&cfg)
	testutil.Eventually(t, "unpause", 5*time.Second, func() bool { return !h.srv.Pool().Stats().Paused })
	exec1(ctx, t, c, "select 1")
}

// SIGTERM during a transaction (Run's context ends): readiness goes false, new connections
// are refused, the transaction commits, and Run returns promptly.
func TestDrainFinishesTransaction(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	testutil.Eventually(t, "readiness", 5*time.Second, func() bool { code, _ := httpGet(t, h.adminURL("/readyz")); return code == 200 })
	setup := h.connect(ctx, t)
	exec1(ctx, t, setup, "create table if not exists drained (v int); truncate drained")
	idle := h.connect(ctx, t)
	exec1(ctx, t, idle, "select 1")

	inTx := h.connect(ctx, t)
	exec1(ctx, t, inTx, "begin")
	exec1(ctx, t, inTx, "insert into drained values (7)")

	h.cancel() // what SIGTERM does in cmd/edgepool
	testutil.Eventually(t, "readiness false", 2*time.Second, func() bool {
		resp, err := http.Get(h.adminURL("/readyz"))
		if err != nil {
			return true
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	testutil.Eventually(t, "new connections refused", 2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", h.srv.PostgresAddr().String(), time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	// The idle client is closed by the drain.
	testutil.Eventually(t, "idle client closed", 2*time.Second, func() bool {
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
	testutil.Eventually(t, "the old password refused", 15*time.Second, func() bool {
		probe := h.connect(ctx, t)
		defer probe.Close(ctx)
		_, err := probe.Exec(ctx, "select 1").ReadAll()
		return pgCode(err) == "53300"
	})
	cfg := *h.cfg
	cfg.Upstream.Password = "second"
	h.writeConfig(&cfg) // picked up by the file watch, not at once
	testutil.Eventually(t, "queries with the new password", 15*time.Second, func() bool {
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
	testutil.Eventually(t, "queries as the new role", 15*time.Second, func() bool {
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
	// The pump is stuck writing when PostgreSQL is: its backend waits to write the rows nobody reads.
	testutil.Eventually(t, "the query's backend blocked writing its result", 10*time.Second, func() bool {
		return pg.Count(t, "select count(*) from pg_stat_activity where query like 'select repeat%' and wait_event = 'ClientWrite'") == 1
	})
	if _, err := hj.Conn.Write(appendMessage(nil, 'B', []byte("portal-without-terminator"))); err != nil {
		t.Fatal(err)
	}
	// The client goes on not reading while the session takes the Bind; nothing outside the
	// session shows the Bind taken.
	time.Sleep(300 * time.Millisecond) // the stalled reader is the subject of the test
	_ = hj.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	data, err := io.ReadAll(hj.Conn)
	if err != nil {
		t.Fatalf("session did not close after the malformed Bind (%d bytes read): %v", len(data), err)
	}
	if !strings.Contains(string(data), "08P01") {
		t.Fatalf("no FATAL 08P01 among %d bytes", len(data))
	}
	testutil.Eventually(t, "upstream connection back in the pool", 5*time.Second, func() bool {
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

// largeMessageStart frames the first 1 KiB of a message of body length n whose body starts
// with start (padded with 'x').
func largeMessageStart(typ byte, start string, n int) []byte {
	b := appendMessage(nil, typ, []byte(start+strings.Repeat("x", 1024-len(start))))
	binary.BigEndian.PutUint32(b[1:5], uint32(4+n))
	return b
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
		// Larger than the read buffer (streamed upstream in pieces): the start is checked
		// before the message takes a connection. Only the first 1 KiB is sent, all that the
		// check waits for, so the pooler has read everything when it answers and closes.
		largeMessageStart('Q', "select 1\x00", 20_000),                             // the string ends early
		largeMessageStart('B', "\x00\x00\x00\x00\x00\x01\xff\xff\xff\xfe", 20_000), // parameter length -2
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	slots := make(chan struct{}, 20) // 20 at a time: 200 SCRAM logins at once outlast the auth timeout under -race
	for i := range 200 {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
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
