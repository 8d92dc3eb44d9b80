package accelerate

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// cancelGrace is how long a statement may take to stop after its cancel request before the
// connection is cut.
const cancelGrace = 3 * time.Second

// guarded runs fn on pc so that ending ctx (a timeout, a client gone, an expired
// transaction) stops the running statement with a CancelRequest instead of cutting the
// connection at once. fn's own context ends only cancelGrace later. It reports whether a
// cancel was sent: the connection must not be reused then, because Postgres may deliver the
// cancel late, to a later statement.
func guarded(ctx context.Context, pc *pgconn.PgConn, fn func(opCtx context.Context) error) (cancelled bool, err error) {
	opCtx, stopOp := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopOp(nil)
	fired := make(chan struct{})
	stopWatch := context.AfterFunc(ctx, func() {
		defer close(fired)
		cctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
		defer cancel()
		_ = pc.CancelRequest(cctx)
		time.AfterFunc(cancelGrace, func() { stopOp(context.Cause(ctx)) })
	})
	err = fn(opCtx)
	if stopWatch() {
		return false, err
	}
	<-fired
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
