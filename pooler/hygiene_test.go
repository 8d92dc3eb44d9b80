package pooler_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// A client killed inside a transaction that holds a row lock: the pooler rolls its upstream
// connection back, so the next client gets the lock at once.
func TestKilledClientReleasesRowLock(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	setup := h.connect(ctx, t)
	exec1(ctx, t, setup, "create table if not exists locked (id int primary key, v int); insert into locked values (1, 0) on conflict do nothing")

	victim := h.connect(ctx, t)
	exec1(ctx, t, victim, "begin")
	exec1(ctx, t, victim, "select v from locked where id = 1 for update")
	// Kill the client: close its socket without a Terminate message.
	_ = victim.Conn().Close()

	next := h.connect(ctx, t)
	start := time.Now()
	exec1(ctx, t, next, "set lock_timeout = '5s'")
	exec1(ctx, t, next, "begin")
	exec1(ctx, t, next, "select v from locked where id = 1 for update")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("next client waited %v for the lock", d)
	}
	exec1(ctx, t, next, "commit")
}

// Session mode: a SET made by one client is gone for the next client on the same upstream
// connection (DISCARD ALL on release).
func TestSessionModeSetDoesNotLeak(t *testing.T) {
	h := startPooler(t, func(c *config.Config) { c.Pool.Mode = config.ModeSession; c.Pool.Size = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	first, err := pgconn.Connect(ctx, h.dsn(h.key, ""))
	if err != nil {
		t.Fatal(err)
	}
	exec1(ctx, t, first, "set statement_timeout = '1234s'")
	pid := exec1(ctx, t, first, "select pg_backend_pid()")
	if got := exec1(ctx, t, first, "show statement_timeout"); got != "1234s" {
		t.Fatalf("SET did not apply: %q", got)
	}
	first.Close(ctx)

	second := h.connect(ctx, t)
	if got := exec1(ctx, t, second, "select pg_backend_pid()"); got != pid {
		t.Fatalf("second client on another upstream connection (%s vs %s); the test needs the same one", got, pid)
	}
	if got := exec1(ctx, t, second, "show statement_timeout"); got != "0" {
		t.Fatalf("statement_timeout leaked to the next client: %q", got)
	}
}

// A cancel request sent with the pooler-issued key cancels the query on the upstream
// connection the client holds.
func TestCancelRequestReachesUpstream(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	const query = "select pg_sleep(10) -- TestCancelRequestReachesUpstream"
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, query).ReadAll()
		done <- err
	}()
	testutil.Eventually(t, "the query running upstream", 10*time.Second, func() bool { return pg.ActiveQueries(t, query) == 1 })
	start := time.Now()
	if err := c.CancelRequest(ctx); err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	err := <-done
	elapsed := time.Since(start)
	if code := pgCode(err); code != "57014" {
		t.Fatalf("want 57014 query_canceled, got %v", err)
	}
	if elapsed > time.Second {
		t.Fatalf("cancel took %v", elapsed)
	}
	// The session still works afterwards.
	if got := exec1(ctx, t, c, "select 1"); got != "1" {
		t.Fatalf("after cancel: %q", got)
	}
	// pgx's own context cancellation goes through the same path.
	conn, err := pgx.Connect(ctx, h.dsn(h.key, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer qcancel()
	start = time.Now()
	_, err = conn.Exec(qctx, "select pg_sleep(10)")
	if err == nil || time.Since(start) > 1300*time.Millisecond {
		t.Fatalf("pgx context cancel: err=%v after %v", err, time.Since(start))
	}
}

// TestCancelRequestsGetNoAnswer: like PostgreSQL, the pooler answers no CancelRequest — not
// pgx's keyless one (sent after a connection fails while logging in), not one with a wrong key,
// not a malformed one — it closes the connection, and the client it would have cancelled runs on.
func TestCancelRequestsGetNoAnswer(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	pid := c.PID()
	cancelPacket := func(rest []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+len(rest)))
		return append(binary.BigEndian.AppendUint32(b, 80877102), rest...)
	}
	withPID := func(key []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, pid), key...) }
	for _, tc := range []struct {
		name   string
		packet []byte
	}{
		{"no process ID (malformed)", cancelPacket(nil)},
		{"keyless, as pgx sends after a failed login", cancelPacket(withPID(nil))},
		{"a wrong key", cancelPacket(withPID([]byte{1, 2, 3, 4}))},
		{"a key longer than any", cancelPacket(withPID(make([]byte, 300)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.srv.PostgresAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.packet); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil || len(got) != 0 {
				t.Fatalf("answered %q (err %v); want the connection closed without a word", got, err)
			}
		})
	}
	if got := exec1(ctx, t, c, "select 1"); got != "1" {
		t.Fatalf("the session the requests named: %q", got)
	}
}

// Pool size 1, connection held in a transaction: a second client gets the query-wait error
// (53300) on time, and works again once the connection is free.
func TestQueryWaitTimeoutWithPoolSizeOne(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Pool.Size = 1
		c.Pool.QueryWaitTimeout = config.Duration{Duration: 500 * time.Millisecond}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	holder := h.connect(ctx, t)
	exec1(ctx, t, holder, "begin")
	exec1(ctx, t, holder, "select 1")

	waiter := h.connect(ctx, t)
	start := time.Now()
	_, err := waiter.Exec(ctx, "select 2").ReadAll()
	elapsed := time.Since(start)
	if code := pgCode(err); code != "53300" {
		t.Fatalf("want 53300, got %v", err)
	}
	if elapsed < 450*time.Millisecond || elapsed > 1500*time.Millisecond {
		t.Fatalf("query-wait error after %v, want about 500ms", elapsed)
	}
	// Extended protocol gets the same error and the session stays in sync.
	res := waiter.ExecParams(ctx, "select $1::int", [][]byte{[]byte("3")}, nil, nil, nil).Read()
	if code := pgCode(res.Err); code != "53300" {
		t.Fatalf("extended protocol: want 53300, got %v", res.Err)
	}
	exec1(ctx, t, holder, "commit")
	if got := exec1(ctx, t, waiter, "select 4"); got != "4" {
		t.Fatalf("after release: %q", got)
	}
}

// Protocol-level prepared statements in transaction mode: a standalone Describe of a
// statement prepared earlier works on another upstream connection; DEALLOCATE ALL forgets.
func TestPreparedStatementsAcrossConnections(t *testing.T) {
	h := startPooler(t, func(c *config.Config) { c.Pool.Size = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	if _, err := c.Prepare(ctx, "s1", "select $1::int + 1 as next", nil); err != nil {
		t.Fatal(err)
	}
	firstPID := exec1(ctx, t, c, "select pg_backend_pid()")
	// Another client holds the connection c used, so c lands on the other one.
	other := h.connect(ctx, t)
	exec1(ctx, t, other, "begin")
	otherPID := exec1(ctx, t, other, "select pg_backend_pid()")
	if otherPID != firstPID {
		t.Logf("other client got pid %s, c used %s", otherPID, firstPID)
	}
	// Standalone Describe (Supavisor #1174).
	fe := c.Frontend()
	fe.SendDescribe(&pgprotoDescribeS1)
	fe.SendSync(&pgprotoSync)
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var sawParams, sawRows bool
	for {
		msg, err := c.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgprotoParameterDescription:
			sawParams = len(m.ParameterOIDs) == 1
		case *pgprotoRowDescription:
			sawRows = len(m.Fields) == 1 && string(m.Fields[0].Name) == "next"
		case *pgprotoErrorResponse:
			t.Fatalf("describe: %s %s", m.Code, m.Message)
		}
		if _, ok := msg.(*pgprotoReadyForQuery); ok {
			break
		}
	}
	if !sawParams || !sawRows {
		t.Fatalf("describe answered params=%v rows=%v", sawParams, sawRows)
	}
	res := c.ExecPrepared(ctx, "s1", [][]byte{[]byte("41")}, nil, nil).Read()
	if res.Err != nil || string(res.Rows[0][0]) != "42" {
		t.Fatalf("exec prepared: %v %v", res.Err, res.Rows)
	}
	exec1(ctx, t, other, "commit")
	exec1(ctx, t, c, "deallocate all")
	res = c.ExecPrepared(ctx, "s1", [][]byte{[]byte("1")}, nil, nil).Read()
	if code := pgCode(res.Err); code != "26000" {
		t.Fatalf("after DEALLOCATE ALL: want 26000, got %v", res.Err)
	}
	// A failing Parse does not leave a broken name behind.
	if _, err := c.Prepare(ctx, "bad", "selec 1", nil); pgCode(err) != "42601" {
		t.Fatalf("syntax error: %v", err)
	}
	if _, err := c.Prepare(ctx, "bad", "select 1", nil); err != nil {
		t.Fatalf("re-prepare after failure: %v", err)
	}
}

// COPY in both directions through transaction pooling.
func TestCopyBothDirections(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	exec1(ctx, t, c, "create table if not exists copied (id int, name text); truncate copied")
	in := strings.Repeat("1\tone\n2\ttwo\n", 5000)
	tag, err := c.CopyFrom(ctx, strings.NewReader(in), "copy copied from stdin")
	if err != nil || tag.RowsAffected() != 10000 {
		t.Fatalf("copy from: %v %v", tag, err)
	}
	var out strings.Builder
	tag, err = c.CopyTo(ctx, &out, "copy (select * from copied order by id, name) to stdout")
	if err != nil || tag.RowsAffected() != 10000 || !strings.HasPrefix(out.String(), "1\tone\n") {
		t.Fatalf("copy to: %v %v", tag, err)
	}
	if st := h.srv.Pool().Stats(); st.Active != 0 {
		t.Fatalf("connection still held after COPY: %+v", st)
	}
}

// Postgres restarted under load: nobody hangs past the query-wait timeout, and the pooler
// serves again within 2 s of Postgres being back.
func TestPostgresRestartUnderLoad(t *testing.T) {
	const wait = 2 * time.Second
	h := startPooler(t, func(c *config.Config) {
		c.Pool.QueryWaitTimeout = config.Duration{Duration: wait}
		c.Pool.ConnectTimeout = config.Duration{Duration: time.Second}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		stop        atomic.Bool
		longest     atomic.Int64
		okAfterBack atomic.Int64 // unix nanos of the first success after Postgres is back
		succeeded   atomic.Int64 // queries answered
		back        atomic.Int64
		wg          sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *pgconn.PgConn
			for !stop.Load() {
				var err error
				if c == nil || c.IsClosed() {
					c, err = pgconn.Connect(ctx, h.dsn(h.key, ""))
				}
				// Time the query alone: connecting to the pooler does not touch the upstream.
				start := time.Now()
				if err == nil {
					_, err = c.Exec(ctx, "select 1").ReadAll()
				}
				d := time.Since(start)
				for {
					cur := longest.Load()
					if int64(d) <= cur || longest.CompareAndSwap(cur, int64(d)) {
						break
					}
				}
				if err == nil {
					if b := back.Load(); b != 0 && start.UnixNano() >= b {
						okAfterBack.CompareAndSwap(0, time.Now().UnixNano())
					}
				} else {
					if c != nil && !errors.Is(err, context.Canceled) && pgCode(err) != "53300" {
						c.Close(ctx)
						c = nil
					}
					time.Sleep(20 * time.Millisecond) // a client's pause before it retries: the load, not a wait
				}
				if err == nil {
					succeeded.Add(1)
				}
			}
			if c != nil {
				c.Close(ctx)
			}
		}()
	}
	halt := sync.OnceFunc(func() { stop.Store(true); wg.Wait() })
	defer halt()
	testutil.Eventually(t, "the load running", 10*time.Second, func() bool { return succeeded.Load() >= 8 })
	timeouts := h.srv.Pool().Stats().WaitTimeouts
	pg.Stop()
	// Down until queries have waited out the query-wait timeout, as many as there are clients.
	testutil.Eventually(t, "query-wait timeouts while PostgreSQL is down", 20*time.Second, func() bool {
		return h.srv.Pool().Stats().WaitTimeouts >= timeouts+8
	})
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	back.Store(time.Now().UnixNano())
	servedAgain := testutil.Poll(5*time.Second, func() error {
		if okAfterBack.Load() == 0 {
			return errors.New("no success yet")
		}
		return nil
	})
	halt()
	if servedAgain != nil {
		t.Fatal("no successful query within 5s of Postgres being back")
	}
	if d := time.Duration(okAfterBack.Load() - back.Load()); d > 2*time.Second {
		t.Fatalf("serving again %v after Postgres was back, want < 2s", d)
	}
	if d := time.Duration(longest.Load()); d > wait+time.Second {
		t.Fatalf("a client waited %v, more than the query-wait timeout %v", d, wait)
	}
}

// Startup parameters reach whichever upstream connection a client lands on, a client's own
// SET follows it, and neither leaks to other clients in transaction mode.
func TestSessionParametersFollowClientsNotConnections(t *testing.T) {
	h := startPooler(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	plain := h.connect(ctx, t)
	defaultTZ := exec1(ctx, t, plain, "show timezone")
	defaultDate := exec1(ctx, t, plain, "show datestyle")

	cfg, err := pgconn.ParseConfig(h.dsn(h.key, "&application_name=alpha&options=-c%20TimeZone%3DAsia/Tokyo"))
	if err != nil {
		t.Fatal(err)
	}
	alpha, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer alpha.Close(ctx)
	if got := alpha.ParameterStatus("TimeZone"); got != "Asia/Tokyo" {
		t.Fatalf("startup ParameterStatus TimeZone = %q", got)
	}
	if got := exec1(ctx, t, alpha, "show timezone"); got != "Asia/Tokyo" {
		t.Fatalf("timezone = %q", got)
	}
	if got := exec1(ctx, t, alpha, "select current_setting('application_name')"); got != "alpha" {
		t.Fatalf("application_name = %q", got)
	}
	exec1(ctx, t, alpha, "set datestyle = 'German'")

	// Same single upstream connection, other client: defaults.
	if got := exec1(ctx, t, plain, "show timezone"); got != defaultTZ {
		t.Fatalf("timezone leaked: %q, want %q", got, defaultTZ)
	}
	if got := exec1(ctx, t, plain, "show datestyle"); got != defaultDate {
		t.Fatalf("datestyle leaked: %q, want %q", got, defaultDate)
	}
	if got := exec1(ctx, t, plain, "select current_setting('application_name')"); got != "" {
		t.Fatalf("application_name leaked: %q", got)
	}
	// The first client keeps its own settings.
	if got := exec1(ctx, t, alpha, "show datestyle"); got != "German, DMY" {
		t.Fatalf("client's SET lost: %q", got)
	}
	if got := exec1(ctx, t, alpha, "show timezone"); got != "Asia/Tokyo" {
		t.Fatalf("client's timezone lost: %q", got)
	}
	// A bad startup value ends that client like PostgreSQL refusing it.
	bad, err := pgconn.Connect(ctx, h.dsn(h.key, "&options=-c%20TimeZone%3DMars/Olympus"))
	if err == nil {
		_, err = bad.Exec(ctx, "select 1").ReadAll()
		bad.Close(ctx)
	}
	if err == nil {
		t.Fatal("bad TimeZone accepted")
	}
	exec1(ctx, t, plain, "select 1")
}
