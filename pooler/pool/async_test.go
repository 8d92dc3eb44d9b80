package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/edgepool/edgepool/internal/testutil"
)

// The non-blocking path an event loop uses: TakeIdle, Queue with a notify callback, Cancel, and
// AcquireSince as the fallback.

// notified stands in for an event loop's own queue: notify only hands the connection over.
func notified() (notify func(*Conn), got chan *Conn) {
	got = make(chan *Conn, 4)
	return func(c *Conn) { got <- c }, got
}

// receive waits for what notify delivered, failing the test when nothing comes within 5s.
func receive(t *testing.T, got <-chan *Conn) *Conn {
	t.Helper()
	select {
	case c := <-got:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("notify was not called")
		return nil
	}
}

// nothingYet fails the test when notify has already been called.
func nothingYet(t *testing.T, got <-chan *Conn) {
	t.Helper()
	select {
	case c := <-got:
		t.Fatalf("notify called early with %v", c)
	default:
	}
}

// mustAcquire borrows a connection or fails the test.
// mustQueue queues a notify waiter on a pool that must be full.
func mustQueue(t *testing.T, p *Pool, start time.Time, notify func(*Conn)) *Waiter {
	t.Helper()
	w := p.Queue(start, notify)
	if w == nil {
		t.Fatal("Queue on a full pool returned nil")
	}
	return w
}

func mustAcquire(t *testing.T, p *Pool) *Conn {
	t.Helper()
	c, err := p.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type acquired struct {
	c   *Conn
	err error
}

// acquireInBackground runs a blocking Acquire and delivers its result.
func acquireInBackground(p *Pool) <-chan acquired {
	res := make(chan acquired, 1)
	go func() {
		c, err := p.Acquire(context.Background())
		res <- acquired{c, err}
	}()
	return res
}

func TestTakeIdleReturnsOnlyAnIdleConnection(t *testing.T) {
	p := newPool(t, 1, time.Second)
	if c := p.TakeIdle(); c != nil {
		t.Fatal("TakeIdle on an empty pool returned a connection")
	}
	if st := p.Stats(); st.Total != 0 || st.Connects != 0 || st.Acquires != 0 {
		t.Fatalf("TakeIdle on an empty pool changed it: %+v", st)
	}
	c := mustAcquire(t, p)
	if p.TakeIdle() != nil {
		t.Fatal("TakeIdle returned the borrowed connection")
	}
	c.Release()
	c2 := p.TakeIdle()
	if c2 != c {
		t.Fatalf("TakeIdle after Release: got %p, want the released %p", c2, c)
	}
	if st := p.Stats(); st.Idle != 0 || st.Active != 1 || st.Acquires != 2 || st.Waits != 0 {
		t.Fatalf("stats after TakeIdle: %+v", st)
	}
	c2.Release() // borrowed again: Release must return it
	if st := p.Stats(); st.Idle != 1 {
		t.Fatalf("TakeIdle's connection not returned by Release: %+v", st)
	}
	p.SetPaused(true)
	if p.TakeIdle() != nil {
		t.Fatal("TakeIdle on a paused pool returned a connection")
	}
}

func TestQueueOnlyWhenThePoolIsFull(t *testing.T) {
	p := newPool(t, 1, 10*time.Second)
	notify, got := notified()
	if w := p.Queue(time.Now(), notify); w != nil {
		t.Fatal("Queue on a pool that can still open a connection returned a waiter")
	}
	c := mustAcquire(t, p)
	c.Release()
	if w := p.Queue(time.Now(), notify); w != nil {
		t.Fatal("Queue with an idle connection returned a waiter")
	}
	c = p.TakeIdle()
	if c == nil {
		t.Fatal("no idle connection")
	}
	defer c.Release()
	if w := p.Queue(time.Now().Add(-11*time.Second), notify); w != nil {
		t.Fatal("Queue past the query-wait deadline returned a waiter")
	}
	w := mustQueue(t, p, time.Now(), notify)
	if st := p.Stats(); st.Waiting != 1 || st.Waits != 1 {
		t.Fatalf("a notify waiter not counted: %+v", st)
	}
	if !w.Cancel() {
		t.Fatal("Cancel of a queued waiter reported false")
	}
	if st := p.Stats(); st.Waiting != 0 {
		t.Fatalf("cancelled waiter still counted: %+v", st)
	}
	nothingYet(t, got)
	p.SetPaused(true)
	if w := p.Queue(time.Now(), notify); w != nil {
		t.Fatal("Queue on a paused pool returned a waiter")
	}
}

// Blocking and notify waiters share one FIFO: whoever queued first gets the first connection.
func TestQueueIsFairWithBlockingAcquire(t *testing.T) {
	t.Run("blocking first", func(t *testing.T) {
		p := newPool(t, 1, 10*time.Second)
		c := mustAcquire(t, p)
		blocking := acquireInBackground(p)
		testutil.EventuallyNoError(t, "the blocking Acquire queued", 5*time.Second, waiting(p, 1))
		notify, got := notified()
		w := mustQueue(t, p, time.Now(), notify)
		if st := p.Stats(); st.Waiting != 2 {
			t.Fatalf("stats %+v, want 2 waiting", st)
		}
		c.Release()
		r := <-blocking
		if r.err != nil || r.c != c {
			t.Fatalf("the first waiter (blocking) got %v, %v; want the released connection", r.c, r.err)
		}
		nothingYet(t, got)
		r.c.Release()
		if c2 := receive(t, got); c2 != c {
			t.Fatalf("the second waiter (notify) got %v, want the released connection", c2)
		}
		if w.Cancel() {
			t.Fatal("Cancel after notify reported true")
		}
		c.Release()
		if st := p.Stats(); st.Idle != 1 || st.Waiting != 0 || st.Acquires != 3 || st.Waits != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("notify first", func(t *testing.T) {
		p := newPool(t, 1, 10*time.Second)
		c := mustAcquire(t, p)
		notify, got := notified()
		if w := p.Queue(time.Now(), notify); w == nil {
			t.Fatal("Queue on a full pool returned nil")
		}
		blocking := acquireInBackground(p)
		testutil.EventuallyNoError(t, "the blocking Acquire queued", 5*time.Second, waiting(p, 2))
		c.Release()
		c2 := receive(t, got)
		if c2 != c {
			t.Fatalf("the first waiter (notify) got %v, want the released connection", c2)
		}
		select {
		case r := <-blocking:
			t.Fatalf("the second waiter (blocking) got %v, %v before the first released", r.c, r.err)
		default:
		}
		c2.Release() // notify's connection is borrowed: its Release hands it on
		r := <-blocking
		if r.err != nil || r.c != c {
			t.Fatalf("the second waiter (blocking) got %v, %v; want the released connection", r.c, r.err)
		}
		r.c.Release()
	})
}

// A notify waiter past its deadline gets nil; AcquireSince from the same start then reports
// the 53300 timeout at once instead of waiting a second query-wait timeout.
func TestQueueDeadlineThenAcquireSinceTimesOutAtOnce(t *testing.T) {
	const wait = 200 * time.Millisecond
	p := newPool(t, 1, wait)
	c := mustAcquire(t, p)
	defer c.Release()
	notify, got := notified()
	start := time.Now()
	w := mustQueue(t, p, start, notify)
	if c2 := receive(t, got); c2 != nil {
		t.Fatalf("notify got a connection (%v) while the only one is borrowed", c2)
	}
	if waited := time.Since(start); waited < wait {
		t.Fatalf("notified after %v, before the %v deadline", waited, wait)
	}
	if w.Cancel() {
		t.Fatal("Cancel after notify reported true")
	}
	retry := time.Now()
	_, err := p.AcquireSince(context.Background(), start)
	elapsed := time.Since(retry)
	var pgErr *pgconn.PgError
	if !IsWaitTimeout(err) || !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("want 53300 wait timeout, got %v", err)
	}
	if st := p.Stats(); st.Waits != 1 || st.WaitTimeouts != 1 || st.Acquires != 2 || st.Waiting != 0 {
		t.Fatalf("stats %+v: want one wait (the Queue's), one timeout, two acquisitions", st)
	}
	if elapsed >= wait {
		t.Fatalf("AcquireSince waited %v: its deadline did not count from start", elapsed)
	}
}

func TestCancelQueuedWaiter(t *testing.T) {
	p := newPool(t, 1, 10*time.Second)
	c := mustAcquire(t, p)
	notify, got := notified()
	w := mustQueue(t, p, time.Now(), notify)
	if !w.Cancel() {
		t.Fatal("Cancel of a queued waiter reported false")
	}
	if w.Cancel() {
		t.Fatal("a second Cancel reported true")
	}
	c.Release()
	nothingYet(t, got)
	if st := p.Stats(); st.Idle != 1 || st.Waiting != 0 {
		t.Fatalf("released connection not idle after the waiter cancelled: %+v", st)
	}

	// Once notify has run, Cancel reports false and the delivered connection is the caller's.
	c = p.TakeIdle()
	w = mustQueue(t, p, time.Now(), notify)
	c.Release()
	c2 := receive(t, got)
	if c2 != c {
		t.Fatalf("notify got %v, want the released connection", c2)
	}
	if w.Cancel() {
		t.Fatal("Cancel after notify reported true")
	}
	c2.Release()
	if st := p.Stats(); st.Idle != 1 || st.Total != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A waiter woken with nil because a slot freed, whose caller gives up, passes the wake-up on:
// the next waiter opens a connection instead of sitting out its deadline.
func TestCancelAfterNilPassesTheWakeUpOn(t *testing.T) {
	p := newPool(t, 1, 10*time.Second)
	c := mustAcquire(t, p)
	notify, got := notified()
	w := mustQueue(t, p, time.Now(), notify)
	blocking := acquireInBackground(p)
	testutil.EventuallyNoError(t, "the blocking Acquire queued", 5*time.Second, waiting(p, 2))
	c.Destroy() // frees the slot: the head of the queue (the notify waiter) is woken with nil
	if c2 := receive(t, got); c2 != nil {
		t.Fatalf("notify got %v, want nil", c2)
	}
	if st := p.Stats(); st.Waiting != 1 || st.Total != 0 {
		t.Fatalf("stats %+v", st)
	}
	if w.Cancel() {
		t.Fatal("Cancel after notify reported true")
	}
	select {
	case r := <-blocking:
		if r.err != nil {
			t.Fatal(r.err)
		}
		r.c.Release()
	case <-time.After(5 * time.Second):
		t.Fatal("the blocking waiter was not woken for the freed slot")
	}
}

func TestCloseNotifiesQueuedWaitersWithNil(t *testing.T) {
	p := newPool(t, 1, 10*time.Second)
	c := mustAcquire(t, p)
	notify, got := notified()
	start := time.Now()
	w := mustQueue(t, p, start, notify)
	p.Close()
	select { // notify runs inside Close
	case c2 := <-got:
		if c2 != nil {
			t.Fatalf("notify got %v at Close, want nil", c2)
		}
	default:
		t.Fatal("Close did not notify the queued waiter")
	}
	if _, err := p.AcquireSince(context.Background(), start); !errors.Is(err, ErrClosed) {
		t.Fatalf("AcquireSince after Close: %v, want ErrClosed", err)
	}
	if w.Cancel() {
		t.Fatal("Cancel after Close reported true")
	}
	if p.Queue(time.Now(), notify) != nil || p.TakeIdle() != nil {
		t.Fatal("a closed pool queued or lent")
	}
	c.Release()
	if st := p.Stats(); st.Total != 0 {
		t.Fatalf("connection released after Close kept: %+v", st)
	}
}

// A deadline counted from an earlier start can fall before the head waiter's: the expiry timer
// is brought forward for it rather than firing at the head's deadline.
func TestQueueEarlierDeadlineIsNotifiedOnTime(t *testing.T) {
	const wait = 10 * time.Second
	p := newPool(t, 1, wait)
	c := mustAcquire(t, p)
	blocking := acquireInBackground(p) // deadline in 10s
	testutil.EventuallyNoError(t, "the blocking Acquire queued", 5*time.Second, waiting(p, 1))
	notify, got := notified()
	start := time.Now().Add(-wait + 200*time.Millisecond) // deadline in 200ms
	if w := p.Queue(start, notify); w == nil {
		t.Fatal("Queue on a full pool returned nil")
	}
	if c2 := receive(t, got); c2 != nil { // receive fails after 5s, long before 10s
		t.Fatalf("notify got %v, want nil at the deadline", c2)
	}
	if st := p.Stats(); st.Waiting != 1 {
		t.Fatalf("stats %+v: the blocking waiter should still wait", st)
	}
	c.Release()
	r := <-blocking
	if r.err != nil || r.c != c {
		t.Fatalf("blocking waiter got %v, %v; want the released connection", r.c, r.err)
	}
	r.c.Release()
}
