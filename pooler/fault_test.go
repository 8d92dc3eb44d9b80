package pooler_test

// The fault suite (issue #9): each test breaks one thing under load, on loopback, within a few
// seconds, and asserts three things — no client waits beyond the limit that should end its
// wait, no acknowledged commit is lost (a ledger table checked against the acknowledged
// commits), and valid clients keep working within a stated latency. Each test's comment names
// the limit it proves. The connection flood past the file limit needs its own process:
// cmd/edgepool TestFaultConnectionFloodPastTheFileLimit.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/apikey"
	"github.com/edgepool/edgepool/pooler/config"
)

// faultTimeouts are the pooler limits the fault tests run with: short, so a test takes seconds.
func faultTimeouts(c *config.Config) {
	c.Pool.Size = 4
	c.Pool.ConnectTimeout = config.Duration{Duration: time.Second}
	c.Pool.QueryWaitTimeout = config.Duration{Duration: 2 * time.Second}
	c.Pool.AuthTimeout = config.Duration{Duration: 5 * time.Second} // SCRAM under -race on a busy machine
}

// poolerBehindProxy is a pooler with faultTimeouts whose upstream is reached through a
// faultProxy.
func poolerBehindProxy(t *testing.T) (*harness, *faultProxy) {
	proxy := startFaultProxy(t, pg.Addr())
	host, port := proxy.addr()
	h := startPooler(t, func(c *config.Config) {
		faultTimeouts(c)
		c.Upstream.Host, c.Upstream.Port = host, port
	})
	return h, proxy
}

func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestFaultUpstreamBlackholed: limits proved — pool.connectTimeout and pool.queryWaitTimeout.
// The network to PostgreSQL stops forwarding (sockets stay open). Transactions in flight hang
// until their client's own deadline (3 s) and their connections are dropped; from then on every
// attempt fails with the pooler's 53300 within queryWaitTimeout (2 s) + 0.5 s instead of
// hanging. When the network heals, commits resume within 5 s and none acknowledged is lost.
func TestFaultUpstreamBlackholed(t *testing.T) {
	h, proxy := poolerBehindProxy(t)
	w := startLedger(t, pg, "app", func() string { return h.dsn(h.key, "") }, "fault_blackhole", 8, 3*time.Second)
	w.waitCommits(t, 40, 15*time.Second)

	proxy.blackhole()
	mark := w.mark()
	testutil.Eventually(t, "16 attempts failing with the pooler's query-wait timeout", 20*time.Second, func() bool {
		errs, _ := w.failuresSince(mark)
		n := 0
		for _, err := range errs {
			if sqlstate(err) == "53300" {
				n++
			}
		}
		return n >= 16
	})
	errs, took := w.failuresSince(mark)
	for i, err := range errs {
		if sqlstate(err) == "53300" && took[i] > 2500*time.Millisecond {
			t.Errorf("a query-wait timeout came after %v (limit 2 s)", took[i])
		}
		if took[i] > 3500*time.Millisecond {
			t.Errorf("an attempt hung %v past its own 3 s deadline: %v", took[i], err)
		}
	}
	t.Logf("partition: %d failed attempts, the first (in flight) ending at the client's deadline, then 53300 within the query wait", len(errs))

	proxy.heal()
	t.Logf("after healing, 40 commits in %v", w.waitCommits(t, 40, 5*time.Second).Round(time.Millisecond))
	w.check(t)
}

// TestFaultUpstreamResetMidTransaction: limit proved — a lost upstream connection fails only
// the transaction on it, at once. Every upstream connection is reset (RST) five times while
// clients are inside transactions: their attempts fail within 1 s (no waiting for a timeout),
// the next transactions commit within 2 s of the last reset, and no acknowledged commit is lost.
func TestFaultUpstreamResetMidTransaction(t *testing.T) {
	h, proxy := poolerBehindProxy(t)
	w := startLedger(t, pg, "app", func() string { return h.dsn(h.key, "") }, "fault_reset", 8, 5*time.Second)
	w.waitCommits(t, 40, 15*time.Second)
	mark := w.mark()
	resets := 0
	for range 5 {
		resets += proxy.reset()
		w.waitCommits(t, 10, 5*time.Second) // the pool has reconnected and clients commit again
	}
	t.Logf("reset %d upstream connections; commits resumed within %v of the last reset", resets,
		w.waitCommits(t, 20, 2*time.Second).Round(time.Millisecond))
	errs, took := w.failuresSince(mark)
	if len(errs) == 0 {
		t.Fatal("no transaction noticed the resets")
	}
	for i, err := range errs {
		if took[i] > time.Second {
			t.Errorf("a failed attempt took %v after a reset: %v", took[i], err)
		}
	}
	w.check(t)
}

// TestFaultPostgresKilledUnderLoad: limits proved — pool.connectTimeout and
// pool.queryWaitTimeout while PostgreSQL is down, recovery without intervention. PostgreSQL's
// postmaster gets SIGKILL under load and is restarted (crash recovery) 2 s later: attempts during
// the outage fail within queryWaitTimeout + 0.5 s, commits resume within 5 s of the restart, and
// every acknowledged commit survives the crash (synchronous_commit on).
func TestFaultPostgresKilledUnderLoad(t *testing.T) {
	db := testpg.Start(t, testpg.WithSetting("synchronous_commit", "on"))
	h := startPooler(t, func(c *config.Config) {
		faultTimeouts(c)
		c.Upstream.Host, c.Upstream.Port, c.Upstream.Password = db.Host, db.Port, db.Password
		c.Upstream.Database = "postgres"
	})
	w := startLedger(t, db, "postgres", func() string { return h.dsn(h.key, "") }, "fault_kill", 8, 5*time.Second)
	w.waitCommits(t, 40, 15*time.Second)

	db.Kill()
	killed := time.Now()
	mark := w.mark()
	testutil.Eventually(t, "attempts failing while PostgreSQL is down", 10*time.Second, func() bool {
		errs, _ := w.failuresSince(mark)
		return len(errs) >= 16
	})
	if err := db.Restart(); err != nil {
		t.Fatalf("restart after kill -9: %v", err)
	}
	restarted := time.Now()
	errs, took := w.failuresSince(mark)
	for i, err := range errs {
		if took[i] > 2500*time.Millisecond {
			t.Errorf("an attempt during the outage took %v: %v", took[i], err)
		}
	}
	d := w.waitCommits(t, 40, 5*time.Second)
	t.Logf("down %v; %d failed attempts meanwhile; 40 commits within %v of the restart",
		restarted.Sub(killed).Round(time.Millisecond), len(errs), d.Round(time.Millisecond))
	w.check(t)
}

// TestFaultSlowLorisOnTheWireProtocol: limits proved — pool.authTimeout and
// pool.maxAuthenticatingConnections. 60 connections trickle their startup packet one byte every
// 100 ms and 60 send a startup message and stall in authentication: each is closed within
// authTimeout (1 s) + 0.5 s, and meanwhile committing clients see no failure and a p99 under 1 s.
func TestFaultSlowLorisOnTheWireProtocol(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		faultTimeouts(c)
		c.Pool.AuthTimeout = config.Duration{Duration: time.Second}
		c.Pool.MaxAuthenticatingConnections = 32
	})
	w := startLedger(t, pg, "app", func() string { return h.dsn(h.key, "") }, "fault_slowloris", 4, 5*time.Second)
	w.waitCommits(t, 20, 15*time.Second)
	mark := w.mark()
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "app", "database": "app"}}).Encode(nil)
	var wg sync.WaitGroup
	var worst atomic.Int64
	var open atomic.Int64
	for i := range 120 {
		wg.Go(func() {
			c, err := net.Dial("tcp", h.srv.PostgresAddr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			closed := make(chan struct{})
			go func() { // the reader notices when the pooler closes the connection
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				close(closed)
			}()
			if i%2 == 0 {
				_, _ = c.Write(startup) // then nothing: stalled in the SCRAM exchange
			} else {
				go func() {
					for _, b := range startup {
						if _, err := c.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond) // the trickle is the subject of the test
					}
				}()
			}
			<-closed
			took := time.Since(start)
			if took > 1500*time.Millisecond {
				open.Add(1)
			}
			for {
				old := worst.Load()
				if int64(took) <= old || worst.CompareAndSwap(old, int64(took)) {
					break
				}
			}
		})
	}
	wg.Wait()
	t.Logf("120 slow connections: the last closed after %v", time.Duration(worst.Load()).Round(time.Millisecond))
	if n := open.Load(); n > 0 {
		t.Fatalf("%d slow connections were kept longer than authTimeout + 0.5 s (worst %v)", n, time.Duration(worst.Load()))
	}
	if errs, _ := w.failuresSince(mark); len(errs) > 0 {
		t.Fatalf("valid clients failed during the slow-loris: %v", errs[0])
	}
	w.check(t)
	w.mu.Lock()
	p99 := percentile(w.okIn, 0.99)
	w.mu.Unlock()
	if p99 > time.Second {
		t.Fatalf("p99 commit %v during the slow-loris, want < 1 s", p99)
	}
}

// TestFaultSlowLorisOverHTTP: limits proved — http.readHeaderTimeout, http.bodyReadTimeout
// and http.maxInFlightPerKey. 30 connections trickle their headers and 50 requests of key A
// trickle their bodies: the first are closed within readHeaderTimeout (1 s) + 0.5 s, A's get 408
// or 429 within bodyReadTimeout (1 s) + 0.5 s, and key B's requests meanwhile all answer 200 with
// a p99 under 1 s.
func TestFaultSlowLorisOverHTTP(t *testing.T) {
	b := newTestKey(t, "b")
	h := startPooler(t, func(c *config.Config) {
		faultTimeouts(c)
		c.Listen.HTTP = "127.0.0.1:0"
		c.HTTP.Enabled = true
		c.AllowCleartextWithoutTLS = true // plain HTTP on loopback
		c.HTTP.ReadHeaderTimeout = config.Duration{Duration: time.Second}
		c.HTTP.BodyReadTimeout = config.Duration{Duration: time.Second}
		c.HTTP.MaxInFlightPerKey = 10
		c.Keys = append(c.Keys, b.entry)
	})
	addr := h.srv.HTTPAddr().String()
	var wg sync.WaitGroup
	var slowest atomic.Int64
	note := func(d time.Duration) {
		for {
			old := slowest.Load()
			if int64(d) <= old || slowest.CompareAndSwap(old, int64(d)) {
				return
			}
		}
	}
	statuses := make(chan int, 80)
	for i := range 80 {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			body := `{"query": "select 1"}`
			head := fmt.Sprintf("POST /sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", h.key.secret, len(body))
			trickle := head // slow headers
			if i >= 30 {
				_, _ = c.Write([]byte(head)) // slow body
				trickle = body
			}
			go func() {
				for j := range len(trickle) {
					if _, err := c.Write([]byte{trickle[j]}); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond) // the trickle is the subject of the test
				}
			}()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			note(time.Since(start))
			if err != nil {
				statuses <- 0 // closed without an answer
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	var bLatencies []time.Duration
	for range 20 {
		start := time.Now()
		code, out := postSQL(t, http.DefaultClient, "http://"+addr+"/sql", b.secret, `{"query": "select 1 as one"}`)
		bLatencies = append(bLatencies, time.Since(start))
		if code != http.StatusOK {
			t.Fatalf("key B during the slow-loris: %d %s", code, out)
		}
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	t.Logf("slow clients: %v (0: closed without an answer), slowest ended after %v; key B p99 %v", counts,
		time.Duration(slowest.Load()).Round(time.Millisecond), percentile(bLatencies, 0.99).Round(time.Millisecond))
	// net/http ends a header read cut by its timeout with 400 or by closing the connection.
	if counts[0]+counts[http.StatusBadRequest] != 30 || counts[http.StatusRequestTimeout]+counts[http.StatusTooManyRequests] != 50 {
		t.Fatalf("slow clients ended %v, want 30 × 400/closed and 50 × 408/429", counts)
	}
	if d := time.Duration(slowest.Load()); d > 1500*time.Millisecond {
		t.Fatalf("a slow client was kept %v, limits 1 s", d)
	}
	if p99 := percentile(bLatencies, 0.99); p99 > time.Second {
		t.Fatalf("key B p99 %v, want < 1 s", p99)
	}
}

// TestFaultBadKeysDuringValidTraffic: limits proved — auth.maxFailuresPerSource and the
// rate-limited failure log. 1,000 wrong-key SCRAM logins from 127.0.0.2 while clients from
// 127.0.0.1 commit and connect: the first 20 fail with 28P01, the rest are refused before any
// check (08004; a login already under way when the budget runs out still gets its 28P01);
// valid clients see no failure and new valid connections (SCRAM) keep a p99 under 3 s (their
// median is logged next to the one before the attack);
// every failure is counted, and the log holds at most the burst plus 10 lines a second.
func TestFaultBadKeysDuringValidTraffic(t *testing.T) {
	h := startPooler(t, faultTimeouts)
	w := startLedger(t, pg, "app", func() string { return h.dsn(h.key, "") }, "fault_badkeys", 4, 5*time.Second)
	w.waitCommits(t, 20, 15*time.Second)
	mark := w.mark()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connectFrom := func(local, user, key string) (time.Duration, error) {
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/app?sslmode=disable", user, key, h.port()))
		if err != nil {
			t.Fatal(err)
		}
		dialFrom(cfg, local)
		start := time.Now()
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			c.Close(ctx)
		}
		return time.Since(start), err
	}
	var baseline []time.Duration
	for range 20 {
		d, err := connectFrom("127.0.0.1", h.key.name, h.key.secret)
		if err != nil {
			t.Fatal(err)
		}
		baseline = append(baseline, d)
	}
	var valid []time.Duration
	validDone := make(chan struct{})
	stopValid := make(chan struct{})
	go func() {
		defer close(validDone)
		for {
			select {
			case <-stopValid:
				return
			default:
			}
			d, err := connectFrom("127.0.0.1", h.key.name, h.key.secret)
			if err != nil {
				t.Errorf("valid connection during the attack: %v", err)
				return
			}
			valid = append(valid, d)
		}
	}()
	attackStart := time.Now()
	codes := make(chan string, 1000)
	var wg sync.WaitGroup
	for worker := range 20 {
		wg.Go(func() {
			for range 50 {
				_, err := connectFrom("127.0.0.2", []string{"app", "ghost"}[worker%2], "ep_wrong-key-0123456789")
				codes <- sqlstate(err)
			}
		})
	}
	wg.Wait()
	attack := time.Since(attackStart)
	close(stopValid)
	<-validDone
	close(codes)
	counts := map[string]int{}
	for c := range codes {
		counts[c]++
	}
	t.Logf("1,000 bad logins in %v: %v; valid connects before: p50 %v; meanwhile: %d, p50 %v, p99 %v", attack.Round(time.Millisecond),
		counts, percentile(baseline, 0.5).Round(time.Microsecond), len(valid), percentile(valid, 0.5).Round(time.Microsecond),
		percentile(valid, 0.99).Round(time.Microsecond))
	// The budget is checked when a login starts: logins already under way when it runs out
	// (at most one per concurrent attacker, 20 here) still get their answer.
	if counts["28P01"] < 20 || counts["28P01"] > 40 || counts["28P01"]+counts["08004"] != 1000 {
		t.Fatalf("bad logins answered %v, want 20-40 × 28P01, the rest 08004", counts)
	}
	if p99 := percentile(valid, 0.99); len(valid) == 0 || p99 > 3*time.Second {
		t.Fatalf("valid connects during the attack: %d, p99 %v", len(valid), p99)
	}
	if errs, _ := w.failuresSince(mark); len(errs) > 0 {
		t.Fatalf("committing clients failed during the attack: %v", errs[0])
	}
	var total float64
	for _, reason := range []string{"wrong_key", "unknown_key_name", "too_many_failures"} {
		total += metricValue(t, h, fmt.Sprintf(`edgepool_auth_failures_total{reason=%q,transport="tcp"}`, reason))
	}
	if total != 1000 {
		t.Fatalf("edgepool_auth_failures_total sums to %v, want 1000", total)
	}
	logged := strings.Count(h.log.String(), `msg="authentication failed"`)
	if limit := 50 + int(10*attack.Seconds()) + 10; logged > limit {
		t.Fatalf("%d failure lines logged in %v, rate limit allows %d", logged, attack, limit)
	}
	w.check(t)
}

// TestFaultKeyRotationAndReloadUnderLoad: limit proved — live reload under load. While clients
// commit, the key is rotated (new key added, the previous one kept with a notAfter), the pool
// size is changed by ten reloads, the clients switch to the new key, and the previous key is
// removed: sessions still on it are closed between transactions (57P01) and reconnect with the
// new key; no other failure, no acknowledged commit lost, commits continue throughout.
func TestFaultKeyRotationAndReloadUnderLoad(t *testing.T) {
	salt, err := apikey.NewSalt()
	if err != nil {
		t.Fatal(err)
	}
	oldSecret, oldV := keyWithSalt(t, salt, nil)
	newSecret, newV := keyWithSalt(t, salt, nil)
	h := startPooler(t, func(c *config.Config) {
		faultTimeouts(c)
		c.Keys = []config.Key{{Name: "app", Verifiers: []config.Verifier{oldV}}}
	})
	var secret atomic.Pointer[string]
	secret.Store(&oldSecret)
	dsn := func() string { return h.dsn(testKey{name: "app", secret: *secret.Load()}, "") }
	w := startLedger(t, pg, "app", dsn, "fault_rotation", 8, 5*time.Second)
	w.waitCommits(t, 40, 15*time.Second)
	mark := w.mark()

	cfg := *h.cfg
	grace := time.Now().Add(time.Hour)
	old := oldV
	old.NotAfter = &grace
	cfg.Keys = []config.Key{{Name: "app", Verifiers: []config.Verifier{newV, old}}}
	for i := range 10 {
		cfg.Pool.Size = 3 + i%3
		h.writeConfig(&cfg)
		testutil.Eventually(t, "the reloaded pool size", 5*time.Second, func() bool {
			return metricValue(t, h, "edgepool_pool_size") == float64(cfg.Pool.Size)
		})
		w.waitCommits(t, 5, 5*time.Second)
	}
	secret.Store(&newSecret) // the application reads the new key from its Secret
	cfg.Keys = []config.Key{{Name: "app", Verifiers: []config.Verifier{newV}}}
	h.writeConfig(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testutil.Eventually(t, "the previous key refused", 5*time.Second, func() bool {
		c, err := pgconn.Connect(ctx, h.dsn(testKey{name: "app", secret: oldSecret}, ""))
		if err == nil {
			c.Close(ctx)
		}
		return sqlstate(err) == "28P01"
	})
	w.waitCommits(t, 80, 10*time.Second)
	errs, _ := w.failuresSince(mark)
	for _, err := range errs {
		if sqlstate(err) != "57P01" {
			t.Errorf("unexpected failure during rotation and reloads: %v", err)
		}
	}
	if len(errs) > 8 {
		t.Errorf("%d sessions closed for the previous key, at most one per client (8) expected", len(errs))
	}
	t.Logf("rotation + 11 reloads under load: %d sessions closed for the previous key", len(errs))
	w.check(t)
}
