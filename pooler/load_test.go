package pooler_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgepool/edgepool/pooler/config"
)

// stressDuration is 10 s as the issue asks; EDGEPOOL_STRESS_DURATION shortens local runs.
func stressDuration(t *testing.T) time.Duration {
	if v := os.Getenv("EDGEPOOL_STRESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("EDGEPOOL_STRESS_DURATION: %v", err)
		}
		return d
	}
	return 10 * time.Second
}

// 200 pgx clients with the default statement cache share 10 upstream connections in
// transaction mode and run mixed prepared queries; every result is checked.
func TestPgxStatementCache200ClientsOver10Connections(t *testing.T) {
	h := startPooler(t, func(c *config.Config) {
		c.Pool.Size = 10
		c.Pool.QueryWaitTimeout = config.Duration{Duration: 20 * time.Second}
	})
	const clients = 200
	duration := stressDuration(t)
	ctx, cancel := context.WithTimeout(context.Background(), duration+60*time.Second)
	defer cancel()

	conns := make([]*pgx.Conn, clients)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	sem := make(chan struct{}, 20)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := pgx.Connect(ctx, h.dsn(h.key, ""))
			if err != nil {
				errs <- fmt.Errorf("client %d connect: %w", i, err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()

	var queries atomic.Int64
	deadline := time.Now().Add(duration)
	errs = make(chan error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				if err := mixedQueries(ctx, c, i, n); err != nil {
					errs <- fmt.Errorf("client %d round %d: %w", i, n, err)
					return
				}
				queries.Add(4)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := h.srv.Pool().Stats()
	t.Logf("%d queries in %v through %d upstream connections (%d connects)", queries.Load(), duration, st.Total, st.Connects)
	if st.Connects > 10+5 || st.Total > 10 {
		t.Errorf("pool exceeded its size: %+v", st)
	}
}

func mixedQueries(ctx context.Context, c *pgx.Conn, client, n int) error {
	var sum int
	if err := c.QueryRow(ctx, "select $1::int + $2::int", client, n).Scan(&sum); err != nil {
		return err
	} else if sum != client+n {
		return fmt.Errorf("sum = %d, want %d", sum, client+n)
	}
	var s string
	if err := c.QueryRow(ctx, "select $1::text || '-' || $2::int", "c", client).Scan(&s); err != nil {
		return err
	} else if s != fmt.Sprintf("c-%d", client) {
		return fmt.Errorf("concat = %q", s)
	}
	rows, err := c.Query(ctx, "select g from generate_series(1, $1::int) g", n%7+1)
	if err != nil {
		return err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return err
	} else if len(got) != n%7+1 || got[len(got)-1] != int32(n%7+1) {
		return fmt.Errorf("series = %v", got)
	}
	// A transaction with two prepared statements in it.
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var pid1, pid2 int
	if err := tx.QueryRow(ctx, "select pg_backend_pid() + $1::int", 0).Scan(&pid1); err != nil {
		return err
	}
	if err := tx.QueryRow(ctx, "select pg_backend_pid() + $1::int * 0", client).Scan(&pid2); err != nil {
		return err
	}
	if pid1 != pid2 {
		return fmt.Errorf("transaction moved between upstream connections (%d, %d)", pid1, pid2)
	}
	return tx.Commit(ctx)
}

// pgbench in every query mode, read-only and TPC-B-like, 50 clients, through the pooler.
func TestPgbenchAllModes(t *testing.T) {
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		t.Fatalf("pgbench not found: %v", err)
	}
	h := startPooler(t, func(c *config.Config) {
		c.Pool.Size = 10
		c.Pool.QueryWaitTimeout = config.Duration{Duration: 30 * time.Second}
	})
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(pgbench, args...)
		cmd.Env = append(os.Environ(), "PGHOST=127.0.0.1", fmt.Sprintf("PGPORT=%d", h.port()), "PGUSER="+h.key.name,
			"PGPASSWORD="+h.key.secret, "PGDATABASE=app", "PGSSLMODE=disable")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-i", "-s", "1", "-q")
	for _, mode := range pgbenchModes() {
		for _, script := range []string{"-S", "-b tpcb-like"} {
			t.Run(mode+strings.ReplaceAll(script, " ", ""), func(t *testing.T) {
				args := append([]string{"-M", mode, "-c", "50", "-j", "2", "-t", "20", "-n"}, strings.Fields(script)...)
				out := run(args...)
				if !strings.Contains(out, "number of transactions actually processed: 1000/1000") ||
					!strings.Contains(out, "number of failed transactions: 0") {
					t.Fatalf("pgbench %v:\n%s", args, out)
				}
			})
		}
	}
}

func pgbenchModes() []string {
	if m := os.Getenv("EDGEPOOL_PGBENCH_MODES"); m != "" {
		return strings.Split(m, ",")
	}
	return []string{"simple", "extended", "prepared"}
}
