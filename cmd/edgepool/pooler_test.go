package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edgepool/edgepool/internal/testpg"
	"github.com/edgepool/edgepool/internal/testutil"
	"github.com/edgepool/edgepool/pooler/config"
)

// TestMain lets a test re-run this binary as `edgepool <subcommand>`: the process under test
// is the real main with its real signal handling.
func TestMain(m *testing.M) {
	if os.Getenv("EDGEPOOL_TEST_RUN_MAIN") == "1" {
		os.Args = append([]string{"edgepool"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// SIGTERM to a real `edgepool pooler` process during a transaction: readiness turns false, new
// connections are refused, the open transaction still commits, and the process exits 0 well
// within the drain deadline.
func TestPoolerProcessDrainsOnSIGTERM(t *testing.T) {
	pg := testpg.Start(t)
	pg.Exec(t, "create table drained (v int)")

	cfg, key := processConfig(t, pg)
	cfg.Pool.Size = 2
	cfg.Pool.ShutdownTimeout = config.Duration{Duration: 10 * time.Second}
	p := startPoolerProcess(t, cfg)
	cmd, exited, ready := p.Cmd, p.Exited, p.ready

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := fmt.Sprintf("postgres://app:%s@%s/postgres?sslmode=disable", key, cfg.Listen.Postgres)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "insert into drained values (42)"); err != nil {
		t.Fatal(err)
	}

	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "readiness false", 3*time.Second, func() bool { return !ready() })
	testutil.Eventually(t, "new connections refused", 3*time.Second, func() bool {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return true
		}
		c.Close(ctx)
		return false
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during drain: %v", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("pooler exit: %v", err)
		}
	case <-time.After(cfg.Pool.ShutdownTimeout.Duration + 5*time.Second):
		t.Fatal("pooler did not exit after its drain deadline")
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	conn.Close(ctx)

	check, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(ctx)
	var v int
	if err := check.QueryRow(ctx, "select v from drained").Scan(&v); err != nil || v != 42 {
		t.Fatalf("committed row: %d %v", v, err)
	}
}
