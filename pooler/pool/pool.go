// Package pool keeps the upstream PostgreSQL connections of one pooler process. Every
// transport (wire protocol, WebSocket, HTTP SQL) borrows from the same Pool:
//
//	c, err := p.Acquire(ctx)       // waits at most QueryWaitTimeout; error has SQLSTATE 53300
//	if err != nil { ... }
//	defer c.Release()              // back to the pool only if healthy and idle, else closed
//	res := c.PgConn().ExecParams(ctx, sql, args, nil, nil, nil).Read()
//
// Release returns a connection only when it is open, not busy and outside a transaction
// (TxStatus 'I'); anything else is destroyed, so the next borrower never inherits a transaction
// or a half-read result.
//
// An event loop, which must not block, borrows with TakeIdle, then Queue (a callback instead of
// a wait, in the same queue as Acquire), and falls back to AcquireSince when both return nil.
package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/pooler/internal/sockpoll"
)

// Settings are the live-tunable parameters of a Pool.
type Settings struct {
	// Size is the maximum number of upstream connections.
	Size int
	// QueryWaitTimeout bounds Acquire.
	QueryWaitTimeout time.Duration
	// ConnectTimeout bounds one connection attempt.
	ConnectTimeout time.Duration
	// Lifetime retires connections older than this (0: never).
	Lifetime time.Duration
	// IdleTimeout closes connections idle for longer than this (0: never).
	IdleTimeout time.Duration
	// HealthCheckPeriod is how often idle connections are pinged (0: never).
	HealthCheckPeriod time.Duration
	// PreparedPerConn caps the pooler-managed prepared statements of one connection.
	PreparedPerConn int
}

// Options are fixed for the life of a Pool.
type Options struct {
	// Connect opens one upstream connection. Required.
	Connect func(ctx context.Context) (*pgconn.PgConn, error)
	// ObserveWait, if set, is called with the time each successful or failed Acquire waited.
	// For a Queue waiter it is called with the pool's lock held, so it must not call the pool.
	ObserveWait func(time.Duration)
	// OnConnectError, if set, is told about each failed connection attempt.
	OnConnectError func(error)
}

// ErrClosed is returned by Acquire on a closed pool.
var ErrClosed = errors.New("pool is closed")

// Pool is a bounded set of upstream connections shared by all clients of the process.
type Pool struct {
	opts Options

	mu       sync.Mutex
	settings Settings
	idle     []*Conn // LIFO: the most recently used connection is reused first
	total    int     // open plus connecting
	waiters  []*waiter
	// expiry wakes waiters past their deadline (expireWaiters), at expiryAt; zero while none wait.
	expiry   *time.Timer
	expiryAt time.Time
	paused   bool
	closed   bool
	stopBG   chan struct{}
	bgDone   chan struct{}
	// generation is bumped by RetireAll; connections opened before it are not reused.
	generation atomic.Uint64

	// counters, read by Stats
	acquires       atomic.Int64
	waits          atomic.Int64
	waitTimeouts   atomic.Int64
	waitNanos      atomic.Int64
	connects       atomic.Int64
	connectErrors  atomic.Int64
	deadOnCheckout atomic.Int64
	sockMoves      sockMoves // upstream sockets detached from / attached to Go's netpoller (Sock)
	lastConnErr    atomic.Pointer[string]
}

// waiter is a place in the queue: a blocking Acquire's (ch) or a Queue's (notify).
type waiter struct {
	ch       chan *Conn // Acquire: buffered 1, receives a connection, or nil meaning "try again"
	deadline time.Time

	// Queue only: notify takes what would be sent on ch; start is when the acquisition began.
	notify func(*Conn)
	start  time.Time
	// wokenNil: dequeued with nil, a wake-up that Cancel passes on if the caller gives up.
	wokenNil bool
}

// Waiter is a place in the pool's queue taken by Queue.
type Waiter struct {
	p *Pool
	w waiter
}

// waiters are reused: a busy pool queues most acquisitions, and a channel per wait would be
// garbage on every transaction.
var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan *Conn, 1)} }}

func getWaiter() *waiter  { return waiterPool.Get().(*waiter) }
func putWaiter(w *waiter) { waiterPool.Put(w) }

// New creates a pool. Connections are opened on demand.
func New(s Settings, opts Options) *Pool {
	if s.Size < 1 {
		s.Size = 1
	}
	if s.PreparedPerConn < 1 {
		s.PreparedPerConn = 256
	}
	p := &Pool{opts: opts, settings: s, stopBG: make(chan struct{}), bgDone: make(chan struct{})}
	p.expiry = time.AfterFunc(time.Hour, p.expireWaiters)
	p.expiry.Stop()
	go p.background()
	return p
}

// Settings returns the current settings.
func (p *Pool) Settings() Settings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settings
}

// Update applies new settings live. A smaller size closes idle connections beyond it; busy
// ones are closed when released. A larger size lets waiters open connections.
func (p *Pool) Update(s Settings) {
	if s.Size < 1 {
		s.Size = 1
	}
	if s.PreparedPerConn < 1 {
		s.PreparedPerConn = 256
	}
	p.mu.Lock()
	p.settings = s
	var excess []*Conn
	for p.total > s.Size && len(p.idle) > 0 {
		c := p.idle[0]
		p.idle = p.idle[1:]
		p.total--
		excess = append(excess, c)
	}
	p.wakeAllLocked()
	p.mu.Unlock()
	for _, c := range excess {
		c.close()
	}
}

// RetireAll closes every idle connection and makes the ones lent out close on release, so
// that all later work runs on connections opened from now on (e.g. after the upstream user
// or address changed). Clients holding a connection keep it until their transaction ends.
func (p *Pool) RetireAll() {
	p.mu.Lock()
	p.generation.Add(1)
	retired := p.idle
	p.idle = nil
	p.total -= len(retired)
	p.wakeAllLocked()
	p.mu.Unlock()
	for _, c := range retired {
		c.close()
	}
}

// Resize changes the number of upstream connections live.
func (p *Pool) Resize(n int) {
	s := p.Settings()
	s.Size = n
	p.Update(s)
}

// SetPaused holds (true) or releases (false) new acquisitions. Connections already borrowed are
// not affected; a paused Acquire still ends at its query-wait timeout.
func (p *Pool) SetPaused(paused bool) {
	p.mu.Lock()
	p.paused = paused
	if !paused {
		p.wakeAllLocked()
	}
	p.mu.Unlock()
}

// Acquire borrows a connection, waiting at most the query-wait timeout (or ctx). On timeout the
// error is a *pgconn.PgError with SQLSTATE 53300 (see IsWaitTimeout). Its steps:
//
//  1. takeIdle: the most recently used idle connection, checked alive when it sat idle for a
//     while (checkOut);
//  2. open: a new connection while the pool is below its size;
//  3. wait: queue for a released connection or a free slot, until the deadline.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	return p.acquire(ctx, time.Now(), false)
}

// AcquireSince is Acquire for an acquisition that began at start, typically a Queue waiter
// woken with nil: the query-wait deadline counts from start, so the client does not wait twice
// as long, and the time since start is what it reports as waited (Stats, ObserveWait).
func (p *Pool) AcquireSince(ctx context.Context, start time.Time) (*Conn, error) {
	return p.acquire(ctx, start, true)
}

// acquire is Acquire from start; since: the caller waited before (AcquireSince), so even an
// idle connection taken at once is timed and counted as waited from start.
func (p *Pool) acquire(ctx context.Context, start time.Time, since bool) (*Conn, error) {
	p.acquires.Add(1)
	p.mu.Lock()
	deadline := start.Add(p.settings.QueryWaitTimeout)
	p.mu.Unlock()
	waited := false
	var lastErr error
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if !p.paused {
			if c := p.takeIdleLocked(start); c != nil {
				p.mu.Unlock()
				if p.checkOut(c, start) {
					return p.handOut(c, start, waited || since, waited || since), nil
				}
				continue
			}
			if p.total < p.settings.Size {
				p.total++
				connectTimeout := p.settings.ConnectTimeout
				p.mu.Unlock()
				c, err := p.open(ctx, connectTimeout, deadline)
				if err == nil {
					return p.handOut(c, start, waited || since, true), nil
				}
				lastErr = err
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				// Back off a little before retrying within the deadline.
				if !sleepUntil(ctx, minTime(time.Now().Add(100*time.Millisecond), deadline)) {
					return nil, ctx.Err()
				}
				if !time.Now().Before(deadline) {
					return nil, p.waitTimeout(start, lastErr)
				}
				continue
			}
		}
		if !time.Now().Before(deadline) {
			p.mu.Unlock()
			return nil, p.waitTimeout(start, lastErr)
		}
		if !waited {
			waited = true
			p.waits.Add(1)
		}
		c, err := p.waitLocked(ctx, deadline) // unlocks
		if err != nil {
			return nil, err
		}
		if c != nil {
			return p.handOut(c, start, waited, true), nil
		}
		// Woken without a connection (a slot freed, a resize, unpause, or the deadline): look again.
	}
}

// TakeIdle is Acquire's first step alone, for a caller that must not block (an event loop): an
// idle connection, checked as Acquire checks it, or nil when there is none (or the pool is
// paused or closed). It never connects and never waits.
func (p *Pool) TakeIdle() *Conn {
	for {
		p.mu.Lock()
		if p.closed || p.paused {
			p.mu.Unlock()
			return nil
		}
		now := time.Now()
		c := p.takeIdleLocked(now)
		p.mu.Unlock()
		if c == nil {
			return nil
		}
		if p.checkOut(c, now) {
			p.acquires.Add(1)
			return p.handOut(c, now, false, false)
		}
	}
}

// Queue is Acquire's wait without blocking, for a pool that is full (no idle connection, no
// room to open one, not paused, not closed): it queues a waiter in the same FIFO as Acquire's,
// with the query-wait deadline counted from start, and returns it. Otherwise it returns nil and
// the caller uses AcquireSince (which then connects, or waits out a pause).
//
// The waiter's turn ends with exactly one call notify(c): c is a connection now borrowed by the
// caller, or nil meaning "none for you now" (a slot freed, a resize or unpause, the deadline,
// Close): try again with AcquireSince(ctx, start), which times out at once past the deadline.
// notify runs with the pool's lock held, on whichever goroutine released or woke: it must
// return quickly and must not call the pool (hand c to the caller's own queue and return).
//
// In Stats the waiter is Waiting while queued and counts as a wait at once; it counts as an
// acquisition when it ends with a connection or Cancel (after a nil, AcquireSince counts it).
func (p *Pool) Queue(start time.Time, notify func(*Conn)) *Waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.paused || len(p.idle) > 0 || p.total < p.settings.Size {
		return nil
	}
	deadline := start.Add(p.settings.QueryWaitTimeout)
	if !time.Now().Before(deadline) {
		return nil // AcquireSince reports the timeout
	}
	p.waits.Add(1)
	w := &Waiter{p: p, w: waiter{deadline: deadline, notify: notify, start: start}}
	p.enqueueLocked(&w.w)
	return w
}

// Cancel takes a Queue waiter out of the queue, reporting true, for a caller that no longer
// wants a connection. False means the waiter had already left it: notify has been called, and a
// connection it delivered is the caller's to Release; a nil it delivered needs nothing (Cancel
// passes that wake-up on to the next waiter, as a cancelled Acquire does). Safe from any
// goroutine, but not from notify.
func (w *Waiter) Cancel() bool {
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removeWaiterLocked(&w.w) {
		p.acquires.Add(1) // an acquisition that ended, as a blocking Acquire's ctx ending does
		return true
	}
	if w.w.wokenNil {
		w.w.wokenNil = false
		p.wakeOneLocked()
	}
	return false
}

// takeIdleLocked pops the most recently used idle connection that is not past its lifetime,
// closing expired ones on the way; nil if there is none.
func (p *Pool) takeIdleLocked(now time.Time) *Conn {
	for len(p.idle) > 0 {
		c := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if c.expired(now, p.settings) || c.pg.IsClosed() {
			p.total--
			go c.close()
			continue
		}
		return c
	}
	return nil
}

// checkAfter is how long a connection may sit idle before checkOut looks at its socket.
const checkAfter = time.Second

// checkOut makes sure an idle connection is still alive before it is handed out: PostgreSQL
// tells a backend it terminates (pg_terminate_backend, a restart, idle_session_timeout) with a
// FATAL message and a close, which wait unread in the socket of an idle connection. A
// connection that sat idle for a while is checked without a round trip (poll: anything to read
// from an idle connection means it is going away). A dead one is destroyed and reports false.
func (p *Pool) checkOut(c *Conn, now time.Time) bool {
	if now.Sub(c.lastUsed) < checkAfter || socketQuiet(c.pg.Conn()) {
		return true
	}
	p.mu.Lock()
	p.total--
	p.wakeOneLocked()
	p.mu.Unlock()
	p.deadOnCheckout.Add(1)
	c.close()
	return false
}

// socketQuiet reports whether an idle upstream socket has nothing to say: no bytes to read and
// no hang-up (unknown counts as quiet).
func socketQuiet(conn net.Conn) bool {
	revents, known := sockpoll.Pending(conn, sockpoll.In|sockpoll.RDHup)
	return !known || revents == 0
}

// waitLocked queues the caller until a connection is handed to it (returned), a slot may have
// freed (nil, nil), the deadline passes (nil, nil: the caller then times out) or ctx ends. It is
// called with mu held and returns with it released.
//
// Waiters keep no timer of their own: they queue in FIFO order with the same timeout, so one
// pool timer armed for the head's deadline (expireWaiters) wakes the ones whose time is up.
func (p *Pool) waitLocked(ctx context.Context, deadline time.Time) (*Conn, error) {
	w := getWaiter()
	defer putWaiter(w)
	w.deadline = deadline
	p.enqueueLocked(w)
	p.mu.Unlock()
	var got *Conn
	var ctxErr error
	received := false
	if done := ctx.Done(); done == nil {
		got, received = <-w.ch, true
	} else {
		select {
		case got = <-w.ch:
			received = true
		case <-done:
			ctxErr = ctx.Err()
		}
	}
	p.mu.Lock()
	if !received && !p.removeWaiterLocked(w) {
		// Someone signalled us meanwhile; take what they sent.
		got = <-w.ch
	}
	if ctxErr != nil {
		if got == nil {
			p.wakeOneLocked() // pass on a wake-up meant for us
		}
		p.mu.Unlock()
		if got != nil {
			got.Release()
		}
		return nil, ctxErr
	}
	p.mu.Unlock()
	return got, nil
}

// enqueueLocked appends w to the queue and arms expiry for its deadline unless armed for an
// earlier one (a deadline counted from an earlier start can be earlier than the head's).
func (p *Pool) enqueueLocked(w *waiter) {
	p.waiters = append(p.waiters, w)
	if p.expiryAt.IsZero() || w.deadline.Before(p.expiryAt) {
		p.expiryAt = w.deadline
		p.expiry.Reset(time.Until(w.deadline))
	}
}

// giveLocked ends a dequeued waiter's turn with c, or nil meaning "try again": a send to a
// blocking Acquire, or notify for a Queue waiter, whose borrow it completes like handOut.
func (p *Pool) giveLocked(w *waiter, c *Conn) {
	if w.notify == nil {
		w.ch <- c
		return
	}
	if c != nil {
		p.acquires.Add(1)
		p.handOut(c, w.start, true, true)
	} else {
		w.wokenNil = true
	}
	w.notify(c)
}

// handOut completes an Acquire that started at start; timed: it waited or connected (an idle
// connection taken at once costs no clock read).
func (p *Pool) handOut(c *Conn, start time.Time, waited, timed bool) *Conn {
	var d time.Duration
	if timed {
		d = time.Since(start)
	}
	if waited {
		p.waitNanos.Add(int64(d))
	}
	if p.opts.ObserveWait != nil {
		p.opts.ObserveWait(d)
	}
	c.released.Store(false)
	return c
}

func (p *Pool) waitTimeout(start time.Time, cause error) error {
	p.waitTimeouts.Add(1)
	d := time.Since(start)
	p.waitNanos.Add(int64(d))
	if p.opts.ObserveWait != nil {
		p.opts.ObserveWait(d)
	}
	msg := fmt.Sprintf("query_wait_timeout: no upstream connection available within %s", d.Round(time.Millisecond))
	e := &pgconn.PgError{Severity: "ERROR", Code: "53300", Message: msg}
	if cause != nil {
		e.Detail = "last connection attempt failed" // the cause may name hosts; keep it out of client messages
		return &WaitTimeoutError{PgError: e, Cause: cause}
	}
	return &WaitTimeoutError{PgError: e}
}

// WaitTimeoutError is returned when no connection became available within the query-wait
// timeout. It unwraps to its *pgconn.PgError (SQLSTATE 53300) and to the last connect error.
type WaitTimeoutError struct {
	PgError *pgconn.PgError
	Cause   error
}

func (e *WaitTimeoutError) Error() string {
	if e.Cause != nil {
		return e.PgError.Message + ": " + e.Cause.Error()
	}
	return e.PgError.Message
}

// Unwrap lets errors.As find the *pgconn.PgError and errors.Is the cause.
func (e *WaitTimeoutError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.PgError, e.Cause}
	}
	return []error{e.PgError}
}

// IsWaitTimeout reports whether err is a query-wait timeout.
func IsWaitTimeout(err error) bool {
	var w *WaitTimeoutError
	return errors.As(err, &w)
}

// open connects a new connection for a slot the caller reserved (total++); on failure it gives
// the slot back and wakes a waiter to try instead.
func (p *Pool) open(ctx context.Context, timeout time.Duration, deadline time.Time) (*Conn, error) {
	// Never past the query-wait deadline: a client must get its answer on time.
	cctx, cancel := context.WithDeadline(ctx, minTime(time.Now().Add(timeout), deadline))
	defer cancel()
	p.connects.Add(1)
	gen := p.generation.Load()
	pg, err := p.opts.Connect(cctx)
	if err != nil {
		p.connectErrors.Add(1)
		s := err.Error()
		p.lastConnErr.Store(&s)
		if p.opts.OnConnectError != nil {
			p.opts.OnConnectError(err)
		}
		p.mu.Lock()
		p.total--
		p.wakeOneLocked()
		p.mu.Unlock()
		return nil, err
	}
	if s, ok := pg.Conn().(*Sock); ok {
		s.moves = &p.sockMoves
	}
	now := time.Now()
	return &Conn{pool: p, pg: pg, createdAt: now, lastUsed: now, generation: gen, stmts: newStmtSet()}, nil
}

// release is called by Conn.Release.
func (p *Pool) release(c *Conn) {
	now := time.Now()
	c.lastUsed = now
	p.mu.Lock()
	healthy := !c.broken && !p.closed && !c.pg.IsClosed() && !c.pg.IsBusy() && c.pg.TxStatus() == 'I' &&
		!c.expired(now, p.settings) && p.total <= p.settings.Size && c.generation == p.generation.Load()
	if !healthy {
		p.total--
		p.wakeOneLocked()
		p.mu.Unlock()
		c.close()
		return
	}
	// Hand straight to the oldest waiter, unless paused.
	if !p.paused && len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.giveLocked(w, c)
		p.mu.Unlock()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

func (p *Pool) destroy(c *Conn) {
	p.mu.Lock()
	p.total--
	p.wakeOneLocked()
	p.mu.Unlock()
	c.close()
}

func (p *Pool) wakeOneLocked() {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.giveLocked(w, nil)
	}
}

func (p *Pool) wakeAllLocked() {
	for _, w := range p.waiters {
		p.giveLocked(w, nil)
	}
	p.waiters = nil
}

// expireWaiters runs when the earliest deadline passes: every waiter whose time is up is woken
// (it then reports the query-wait timeout), and the timer is armed for the next deadline. It
// fires about once per queryWaitTimeout while clients queue, not once per wait.
func (p *Pool) expireWaiters() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var next time.Time
	keep := p.waiters[:0]
	for _, w := range p.waiters {
		if !w.deadline.After(now) {
			p.giveLocked(w, nil)
			continue
		}
		if next.IsZero() || w.deadline.Before(next) {
			next = w.deadline
		}
		keep = append(keep, w)
	}
	clear(p.waiters[len(keep):])
	p.waiters = keep
	p.expiryAt = next
	if !next.IsZero() {
		p.expiry.Reset(time.Until(next))
	}
}

func (p *Pool) removeWaiterLocked(w *waiter) bool {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// Close closes idle connections and makes Acquire fail; borrowed connections are closed when
// released.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.expiry.Stop()
	idle := p.idle
	p.idle = nil
	p.total -= len(idle)
	p.wakeAllLocked()
	p.mu.Unlock()
	close(p.stopBG)
	<-p.bgDone
	for _, c := range idle {
		c.close()
	}
}

// background retires idle connections past their lifetime or idle timeout and pings idle ones.
func (p *Pool) background() {
	defer close(p.bgDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastCheck := time.Now()
	for {
		select {
		case <-p.stopBG:
			return
		case <-tick.C:
		}
		now := time.Now()
		p.mu.Lock()
		s := p.settings
		var retire []*Conn
		keep := p.idle[:0]
		for _, c := range p.idle {
			if c.expired(now, s) || c.pg.IsClosed() {
				retire = append(retire, c)
				p.total--
			} else {
				keep = append(keep, c)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		var check []*Conn
		if s.HealthCheckPeriod > 0 && now.Sub(lastCheck) >= s.HealthCheckPeriod {
			lastCheck = now
			// Take idle connections that sat for a while out of the pool to ping them.
			keep = p.idle[:0]
			for _, c := range p.idle {
				if now.Sub(c.lastUsed) >= s.HealthCheckPeriod {
					check = append(check, c)
				} else {
					keep = append(keep, c)
				}
			}
			clear(p.idle[len(keep):])
			p.idle = keep
		}
		if len(retire) > 0 {
			p.wakeAllLocked()
		}
		p.mu.Unlock()
		for _, c := range retire {
			c.close()
		}
		for _, c := range check {
			ctx, cancel := context.WithTimeout(context.Background(), s.ConnectTimeout)
			c.directUses++
			err := c.pg.Ping(ctx)
			cancel()
			if err != nil {
				c.broken = true
			}
			c.lastUsed = time.Now()
			c.released.Store(false)
			c.Release()
		}
	}
}

// Stats is a snapshot of the pool for /debug/pools and metrics.
type Stats struct {
	Size          int     `json:"size"`
	Total         int     `json:"serversTotal"`
	Idle          int     `json:"serversIdle"`
	Active        int     `json:"serversActive"`
	Waiting       int     `json:"clientsWaiting"`
	Paused        bool    `json:"paused"`
	Acquires      int64   `json:"acquires"`
	Waits         int64   `json:"waits"`
	WaitTimeouts  int64   `json:"waitTimeouts"`
	WaitSeconds   float64 `json:"waitSecondsTotal"`
	Connects      int64   `json:"connects"`
	ConnectErrors int64   `json:"connectErrors"`
	// DeadOnCheckout counts idle connections found closed by the server when about to be
	// handed out (and replaced).
	DeadOnCheckout int64 `json:"deadOnCheckout"`
	// SocketsDetached and SocketsAttached count upstream sockets taken out of Go's netpoller
	// by the relay loop and put back for a goroutine's use (Sock).
	SocketsDetached int64  `json:"socketsDetached"`
	SocketsAttached int64  `json:"socketsAttached"`
	LastConnError   string `json:"lastConnectError,omitempty"`
}

// Stats returns current counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	s := Stats{Size: p.settings.Size, Total: p.total, Idle: len(p.idle), Waiting: len(p.waiters), Paused: p.paused}
	p.mu.Unlock()
	s.Active = s.Total - s.Idle
	s.Acquires = p.acquires.Load()
	s.Waits = p.waits.Load()
	s.WaitTimeouts = p.waitTimeouts.Load()
	s.WaitSeconds = time.Duration(p.waitNanos.Load()).Seconds()
	s.Connects = p.connects.Load()
	s.ConnectErrors = p.connectErrors.Load()
	s.DeadOnCheckout = p.deadOnCheckout.Load()
	s.SocketsDetached = p.sockMoves.detached.Load()
	s.SocketsAttached = p.sockMoves.attached.Load()
	if e := p.lastConnErr.Load(); e != nil {
		s.LastConnError = *e
	}
	return s
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
