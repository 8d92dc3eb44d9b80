package testpg

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestStartExecRestart(t *testing.T) {
	pg := Start(t)
	if pg.Port <= 0 || pg.Port >= 32768 {
		t.Fatalf("port %d outside [1, 32768)", pg.Port)
	}
	pg.Exec(t, "create table t (v int); insert into t values (42)")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	readValue := func() string {
		conn, err := pgconn.Connect(ctx, pg.DSN("postgres"))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		res, err := conn.Exec(ctx, "select v from t").ReadAll()
		if err != nil {
			t.Fatalf("select: %v", err)
		}
		return string(res[0].Rows[0][0])
	}
	if got := readValue(); got != "42" {
		t.Fatalf("got %q, want 42", got)
	}

	// Wrong password is refused: scram-sha-256 is really in force.
	bad := "postgres://postgres:wrong@" + pg.Addr() + "/postgres?sslmode=disable"
	if conn, err := pgconn.Connect(ctx, bad); err == nil {
		conn.Close(ctx)
		t.Fatal("connect with a wrong password succeeded")
	}

	pg.Stop()
	if err := pg.ExecErr("select 1"); err == nil {
		t.Fatal("stopped server still answers")
	}
	if err := pg.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if got := readValue(); got != "42" {
		t.Fatalf("after restart got %q, want 42", got)
	}
}

func TestNewAndClose(t *testing.T) {
	pg, err := New(WithSetting("max_connections", "20"))
	if err != nil {
		t.Fatal(err)
	}
	root := pg.root
	if err := pg.ExecErr("select 1"); err != nil {
		t.Fatal(err)
	}
	pg.Close()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Fatalf("data dir %s left behind: %v", root, err)
	}
}
