package pooler_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

func asPgError(err error, target **pgconn.PgError) bool { return errors.As(err, target) }

func TestSimpleAndExtendedQueries(t *testing.T) {
	h := startPooler(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := h.connect(ctx, t)
	if got := exec1(ctx, t, c, "select 40 + 2"); got != "42" {
		t.Fatalf("got %q", got)
	}
	conn, err := pgx.Connect(ctx, h.dsn(h.key, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for i := range 20 {
		var n int
		if err := conn.QueryRow(ctx, "select $1::int * 2", i).Scan(&n); err != nil || n != 2*i {
			t.Fatalf("iteration %d: %d %v", i, n, err)
		}
	}
}

var (
	pgprotoDescribeS1 = pgproto3.Describe{ObjectType: 'S', Name: "s1"}
	pgprotoSync       = pgproto3.Sync{}
)

type (
	pgprotoParameterDescription = pgproto3.ParameterDescription
	pgprotoRowDescription       = pgproto3.RowDescription
	pgprotoErrorResponse        = pgproto3.ErrorResponse
	pgprotoReadyForQuery        = pgproto3.ReadyForQuery
)
