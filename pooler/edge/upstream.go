package edge

import (
	"context"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/pool"
	"github.com/edgepool/edgepool/pooler/session"
)

// Upstream lends upstream connections from the pooler's shared pool. Acquire waits up to the
// pool's query-wait timeout and then fails (a *pgconn.PgError with SQLSTATE 53300), so an HTTP
// request never hangs on a busy pool.
type Upstream interface {
	Acquire(ctx context.Context) (Lease, error)
}

// Lease is one borrowed upstream connection. Release hands it back; the pool decides whether
// it is healthy enough to reuse (idle, not closed).
type Lease interface {
	PgConn() *pgconn.PgConn
	Release()
}

// ConnServer runs one client session over a connection whose transport is already secured
// (the WebSocket's TLS), so a cleartext password is acceptable. It returns when the session ends.
type ConnServer func(ctx context.Context, conn net.Conn)

// PoolUpstream lends connections from the pooler's shared pool.
func PoolUpstream(p *pool.Pool) Upstream { return poolUpstream{p} }

type poolUpstream struct{ p *pool.Pool }

func (u poolUpstream) Acquire(ctx context.Context) (Lease, error) {
	c, err := u.p.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// WebSocketSessions runs WebSocket connections as wire-protocol sessions of proxy, marked
// secure (the WebSocket's TLS carries them) and asking for a cleartext password, which is what
// the Neon serverless driver sends, pipelined with its startup message.
func WebSocketSessions(proxy *session.Proxy) ConnServer {
	return func(ctx context.Context, conn net.Conn) {
		_ = proxy.ServeConn(ctx, conn, session.Options{Secure: true, Cleartext: true})
	}
}
