package pool

import (
	"container/list"
	"context"
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
	borrowedAt time.Time
	broken     bool
	generation uint64 // Pool.generation when opened; an older one is retired on release
	released   atomic.Bool
	stmts      *StmtSet
}

// PgConn is the underlying connection. Do not Close it; use Destroy.
func (c *Conn) PgConn() *pgconn.PgConn { return c.pg }

// Statements is the set of pooler-managed prepared statements that exist on this connection.
func (c *Conn) Statements() *StmtSet { return c.stmts }

// MarkBroken makes the next Release destroy the connection (e.g. after a protocol desync).
func (c *Conn) MarkBroken() { c.broken = true }

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
