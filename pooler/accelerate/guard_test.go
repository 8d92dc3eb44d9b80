package accelerate

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// hangingServer is a PostgreSQL server that accepts a connection and then never answers a
// statement, and ignores cancel requests: what a server stuck on a statement looks like.
func hangingServer(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				be := pgproto3.NewBackend(conn, conn)
				msg, err := be.ReceiveStartupMessage()
				if _, isStartup := msg.(*pgproto3.StartupMessage); err != nil || !isStartup {
					return // a cancel request: ignored
				}
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				if be.Flush() != nil {
					return
				}
				for {
					if _, err := be.Receive(); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A statement that does not stop on its cancel request is cut cancelGrace later: the
// operation fails as cancelled, and the connection is closed (it must not be reused).
func TestGuardedCutsAStatementThatIgnoresItsCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the cancel grace period")
	}
	pc, err := pgconn.Connect(t.Context(), "postgres://x@"+hangingServer(t)+"/x?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	cancelled, err := guarded(ctx, pc, func(opCtx context.Context) error {
		_, err := pc.ExecParams(opCtx, "select 1", nil, nil, nil, nil).Close()
		return err
	})
	took := time.Since(start)
	if !cancelled || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled %v, err %v; want cancelled with context.Canceled", cancelled, err)
	}
	if took < cancelGrace || took > cancelGrace+5*time.Second {
		t.Errorf("cut after %v, want about %v", took, cancelGrace)
	}
	if !pc.IsClosed() {
		t.Error("the connection of the cut statement is still open")
	}
}
