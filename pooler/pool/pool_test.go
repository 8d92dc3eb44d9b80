package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
)

var pg *testpg.Server

func TestMain(m *testing.M) { os.Exit(testutil.RunWithPostgres(m, &pg, nil)) }

func newPool(t *testing.T, size int, wait time.Duration) *Pool {
	t.Helper()
	p := New(Settings{Size: size, QueryWaitTimeout: wait, ConnectTimeout: 5 * time.Second},
		Options{Connect: func(ctx context.Context) (*pgconn.PgConn, error) {
			// As the pooler connects: TCP sockets come as a *Sock.
			cfg, err := pgconn.ParseConfig(pg.DSN("postgres"))
			if err != nil {
				return nil, err
			}
			cfg.DialFunc = DialSock(cfg.DialFunc)
			return pgconn.ConnectConfig(ctx, cfg)
		}})
	t.Cleanup(p.Close)
	return p
}

func TestWaitTimeoutWhenPoolExhausted(t *testing.T) {
	p := newPool(t, 1, 300*time.Millisecond)
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.Acquire(ctx)
	elapsed := time.Since(start)
	var pgErr *pgconn.PgError
	if !IsWaitTimeout(err) || !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("want 53300 wait timeout, got %v", err)
	}
	if elapsed < 250*time.Millisecond || elapsed > time.Second {
		t.Fatalf("wait took %v, want about 300ms", elapsed)
	}
	// A waiter gets the connection as soon as it is released.
	go func() {
		// Release once the Acquire below is queued (a failed wait shows as the Acquire's timeout).
		_ = testutil.Poll(5*time.Second, waiting(p, 1))
		c.Release()
	}()
	c2, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if c2 != c {
		t.Fatal("released connection was not reused")
	}
	c2.Release()
	if st := p.Stats(); st.Total != 1 || st.Idle != 1 || st.WaitTimeouts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReleaseDestroysConnectionInTransaction(t *testing.T) {
	p := newPool(t, 2, time.Second)
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PgConn().Exec(ctx, "begin").ReadAll(); err != nil {
		t.Fatal(err)
	}
	pid := c.PgConn().PID()
	c.Release()
	if st := p.Stats(); st.Total != 0 || st.Idle != 0 {
		t.Fatalf("in-transaction connection kept: %+v", st)
	}
	c2, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Release()
	if c2.PgConn().PID() == pid || c2.PgConn().TxStatus() != 'I' {
		t.Fatal("got the in-transaction connection back")
	}
}

func TestResizeAndPause(t *testing.T) {
	p := newPool(t, 3, time.Second) // room for SCRAM connects under -race on a busy machine
	ctx := context.Background()
	var conns []*Conn
	for range 3 {
		c, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	p.Resize(1)
	if st := p.Stats(); st.Total != 1 || st.Size != 1 {
		t.Fatalf("after resize: %+v", st)
	}
	p.SetPaused(true)
	if _, err := p.Acquire(ctx); !IsWaitTimeout(err) {
		t.Fatalf("paused acquire: %v", err)
	}
	go func() {
		_ = testutil.Poll(5*time.Second, waiting(p, 1)) // the Acquire below waits on the pause
		p.SetPaused(false)
	}()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire after unpause: %v", err)
	}
	c.Release()
}

func TestStmtSetEvictsLeastRecentlyUsed(t *testing.T) {
	s := newStmtSet()
	s.Add("a", 2)
	s.Add("b", 2)
	s.Has("a")
	if ev := s.Add("c", 2); len(ev) != 1 || ev[0] != "b" {
		t.Fatalf("evicted %v, want [b]", ev)
	}
	s.Remove("a")
	if s.Has("a") || !s.Has("c") || s.Len() != 1 {
		t.Fatal("remove/has mismatch")
	}
	s.Clear()
	if s.Len() != 0 {
		t.Fatal("clear")
	}
}

// A connection PostgreSQL terminated while it sat idle is found dead at checkout (its FATAL
// waits unread in the socket) and replaced, so the borrower never sees 57P01.
func TestCheckOutReplacesTerminatedConnection(t *testing.T) { checkOutReplacesTerminated(t, nil) }

// checkOutReplacesTerminated: borrowed (and then given to borrowed if not nil), released,
// terminated by the server, checked out again.
func checkOutReplacesTerminated(t *testing.T, borrowed func(*Conn)) {
	p := newPool(t, 1, 5*time.Second)
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := c.PgConn().PID()
	if borrowed != nil {
		borrowed(c)
	}
	c.Release()
	admin, err := pgconn.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, fmt.Sprintf("select pg_terminate_backend(%d)", pid)).ReadAll(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the terminated backend gone from pg_stat_activity", 10*time.Second, func() bool {
		return pg.Count(t, "select count(*) from pg_stat_activity where pid = $1", strconv.Itoa(int(pid))) == 0
	})
	c.lastUsed = time.Now().Add(-2 * checkAfter) // idle long enough to be checked
	c2, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Release()
	if c2.PgConn().PID() == pid {
		t.Fatal("got the terminated connection back")
	}
	if _, err := c2.PgConn().Exec(ctx, "select 1").ReadAll(); err != nil {
		t.Fatalf("replacement connection: %v", err)
	}
	if st := p.Stats(); st.DeadOnCheckout != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// waiting is a testutil.Poll condition: n Acquire calls of p are queued.
func waiting(p *Pool, n int) func() error {
	return func() error {
		if w := p.Stats().Waiting; w != n {
			return fmt.Errorf("%d waiting, want %d", w, n)
		}
		return nil
	}
}
