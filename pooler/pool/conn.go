package pool

import (
	"container/list"
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Conn is one borrowed upstream connection. Exactly one of Release or Destroy ends a borrow.
type Conn struct {
	pool       *Pool
	pg         *pgconn.PgConn
	createdAt  time.Time
	lastUsed   time.Time
	broken     bool
	generation uint64 // Pool.generation when opened; an older one is retired on release
	released   atomic.Bool
	stmts      *StmtSet

	// relay is the wire relay's state for this connection, kept across borrows (see Relay).
	relay any
	// directUses counts the times the connection was handed out as a *pgconn.PgConn (PgConn)
	// or pinged by the pool: each may have changed what a direct reader of the socket knows.
	directUses uint64
}

// PgConn is the underlying connection. Do not Close it; use Destroy.
func (c *Conn) PgConn() *pgconn.PgConn {
	c.directUses++
	return c.pg
}

// Relay returns the state the wire relay keeps with this connection (nil at first) and how many
// times the connection was used through PgConn so far. The relay reads and writes the socket
// itself between ReadyForQuery messages, bypassing pgconn; it compares the count with the one
// it saw last to know when pgconn may have consumed messages it tracks (ParameterStatus).
func (c *Conn) Relay() (state any, directUses uint64) { return c.relay, c.directUses }

// SetRelay stores the relay's state for this connection. Only the borrower may call it.
func (c *Conn) SetRelay(state any) { c.relay = state }

// ParameterStatus is the value of a parameter the server reported, as pgconn last saw it.
func (c *Conn) ParameterStatus(name string) string { return c.pg.ParameterStatus(name) }

// Cancel asks the server to cancel what the connection is running (a cancel request on a new
// connection, with the backend's key). Safe while another goroutine uses the connection.
func (c *Conn) Cancel(ctx context.Context) error { return c.pg.CancelRequest(ctx) }

// Exec runs sql (clean-up such as ROLLBACK or DISCARD ALL) through pgconn and reads its result.
func (c *Conn) Exec(ctx context.Context, sql string) error {
	c.directUses++
	_, err := c.pg.Exec(ctx, sql).ReadAll()
	return err
}

// Sync prepares the socket for direct use after pgconn used it: pgconn may have started a
// background reader during a slow write, which can still be blocked in a read of the socket
// (it would take the next answer); pgconn.SyncConn waits it out (with a ping if needed).
func (c *Conn) Sync(ctx context.Context) error {
	c.directUses++
	return c.pg.SyncConn(ctx)
}

// Socket is the connection's socket, for a borrower that relays bytes itself. pgconn must be
// idle (no query in progress) with nothing buffered and no background read (see Sync): between
// ReadyForQuery and the next request.
func (c *Conn) Socket() net.Conn { return c.pg.Conn() }

// Statements is the set of pooler-managed prepared statements that exist on this connection.
func (c *Conn) Statements() *StmtSet { return c.stmts }

// Release returns the connection to the pool if it is healthy and idle (not in a
// transaction, not busy, not closed, not past its lifetime); otherwise it is closed.
// Releasing twice is a no-op.
func (c *Conn) Release() {
	if c.released.Swap(true) {
		return
	}
	c.pool.release(c)
}

// Destroy closes the connection and frees its slot in the pool.
func (c *Conn) Destroy() {
	if c.released.Swap(true) {
		return
	}
	c.pool.destroy(c)
}

func (c *Conn) expired(now time.Time, s Settings) bool {
	return (s.Lifetime > 0 && now.Sub(c.createdAt) > s.Lifetime) ||
		(s.IdleTimeout > 0 && now.Sub(c.lastUsed) > s.IdleTimeout)
}

func (c *Conn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.pg.Close(ctx)
}

// StmtSet tracks which server-side prepared statement names exist on one connection, in
// least-recently-used order. It is only used by the goroutine holding the connection.
type StmtSet struct {
	order *list.List // front: most recently used
	byKey map[string]*list.Element
}

func newStmtSet() *StmtSet {
	return &StmtSet{order: list.New(), byKey: map[string]*list.Element{}}
}

// Has reports whether name is prepared here and marks it used.
func (s *StmtSet) Has(name string) bool {
	e, ok := s.byKey[name]
	if ok {
		s.order.MoveToFront(e)
	}
	return ok
}

// Add records name as prepared. If that takes the set beyond limit, it returns the least
// recently used names, which the caller must close on the server.
func (s *StmtSet) Add(name string, limit int) (evict []string) {
	if e, ok := s.byKey[name]; ok {
		s.order.MoveToFront(e)
		return nil
	}
	s.byKey[name] = s.order.PushFront(name)
	for s.order.Len() > limit {
		last := s.order.Back()
		n := last.Value.(string)
		s.order.Remove(last)
		delete(s.byKey, n)
		evict = append(evict, n)
	}
	return evict
}

// Remove forgets name (its Parse failed, or it was closed).
func (s *StmtSet) Remove(name string) {
	if e, ok := s.byKey[name]; ok {
		s.order.Remove(e)
		delete(s.byKey, name)
	}
}

// Clear forgets everything (after DISCARD ALL / DEALLOCATE ALL ran on the server).
func (s *StmtSet) Clear() {
	s.order.Init()
	clear(s.byKey)
}

// Len is the number of statements tracked.
func (s *StmtSet) Len() int { return s.order.Len() }
