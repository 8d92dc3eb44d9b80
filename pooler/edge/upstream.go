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

// ConnServer runs one client session over a WebSocket connection; secure says whether the
// request came over TLS (wss://), which makes a cleartext password acceptable. It returns when
// the session ends.
type ConnServer func(ctx context.Context, conn net.Conn, secure bool)

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

// WebSocketSessions runs WebSocket connections as wire-protocol sessions of proxy asking for
// a cleartext password, which is what the Neon serverless driver sends, pipelined with its
// startup message. Over wss:// the WebSocket's TLS protects it; over plain ws:// the session
// asks for SCRAM instead and refuses a cleartext key, unless allowCleartextWithoutTLS.
func WebSocketSessions(proxy *session.Proxy) ConnServer {
	return func(ctx context.Context, conn net.Conn, secure bool) {
		_ = proxy.ServeConn(ctx, conn, session.Options{Secure: secure, Cleartext: true, Transport: "websocket"})
	}
}
