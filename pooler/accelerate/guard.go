package accelerate

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// cancelGrace is how long a statement may take to stop after its cancel request before the
// connection is cut.
const cancelGrace = 3 * time.Second

// guarded runs fn on pc so that ending ctx (a timeout, a client gone, an expired
// transaction) stops the running statement with a CancelRequest instead of cutting the
// connection at once; a statement still running cancelGrace later is cut (as pgconn cuts one
// whose context ends: the connection's deadline set to now) and fails with context.Canceled.
// fn's context never ends by itself, so pgconn watches no context per statement. guarded
// reports whether a cancel was sent: the connection must not be reused then, because
// Postgres may deliver the cancel late, to a later statement.
func guarded(ctx context.Context, pc *pgconn.PgConn, fn func(opCtx context.Context) error) (cancelled bool, err error) {
	var cut atomic.Bool
	fired := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(fired)
		cctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
		defer cancel()
		_ = pc.CancelRequest(cctx)
		time.AfterFunc(cancelGrace, func() {
			cut.Store(true)
			_ = pc.Conn().SetDeadline(time.Now())
		})
	})
	err = fn(context.WithoutCancel(ctx))
	if stopWatch() {
		return false, err
	}
	<-fired
	if cut.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		err = context.Canceled // what pgconn answers for a statement cut because its context ended
	}
	return true, err
}

// endTransaction rolls back whatever transaction the connection is in; a connection that
// cannot be rolled back is closed (the pool drops closed connections).
func endTransaction(pc *pgconn.PgConn) {
	if pc.IsClosed() || pc.TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil || pc.TxStatus() != 'I' {
		_ = pc.Close(ctx)
	}
}

// closeConn closes a connection that must not be reused; the pool drops closed connections.
func closeConn(pc *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = pc.Close(ctx)
}
