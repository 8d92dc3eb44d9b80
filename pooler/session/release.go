package session

import (
	"context"
	"errors"
	"time"

	"github.com/edgepool/edgepool/pooler/pool"
)

// Borrowing and handing back upstream connections: attach when a message needs one, detach
// when a transaction ends (transaction mode), finish when the session ends.

// errUpstreamLost: the attached connection failed; the client was told.
var errUpstreamLost = errors.New("upstream connection lost")

// attach borrows an upstream connection for the message at read offset start.
func (s *session) attach(ctx context.Context, start int) error {
	c, since := s.borrowed()
	if s.inLoop.Load() {
		// The relay loop never waits: an idle connection now, or it queues the session.
		if c == nil {
			if c = s.proxy.Pool.TakeIdle(); c == nil {
				return errLoopWait
			}
		}
		if !relayReady(c) {
			s.ev.pre = c // pgconn used it since the relay did: a goroutine syncs it
			return errLoopHandoff
		}
	}
	s.setState(StateWaiting)
	var u *upstream
	for attempt := 0; u == nil; attempt++ {
		if c == nil {
			var err error
			if c, err = s.proxy.Pool.AcquireSince(ctx, since); err != nil {
				s.setState(StateIdle)
				return err
			}
		}
		var err error
		if u, err = upstreamOf(ctx, c); err != nil {
			c.Destroy() // could not be made ready for the relay: try another
			c = nil
			if attempt == 2 {
				s.setState(StateIdle)
				return err
			}
		}
	}
	s.setLink(u)
	u.attachedAt = time.Now()
	s.setState(StateActive)
	s.syncParams(u)
	s.armReplay(start)
	return nil
}

// borrowed returns a connection the relay loop borrowed for the session and not attached yet,
// and since when the session waits for one (now when it did not wait in the loop).
func (s *session) borrowed() (*pool.Conn, time.Time) {
	if s.ev == nil {
		return nil, time.Now()
	}
	c, since := s.ev.pre, s.ev.since
	s.ev.pre, s.ev.since = nil, time.Time{}
	if since.IsZero() {
		since = time.Now()
	}
	return c, since
}

// relayReady reports whether the relay can use c at once: it has its relay state and pgconn
// has not used it since (upstreamOf would sync it first).
func relayReady(c *pool.Conn) bool {
	st, uses := c.Relay()
	u, _ := st.(*upstream)
	return u != nil && u.paramsAt == uses
}

// setLink publishes the attached connection (read by cancel requests on other goroutines).
func (s *session) setLink(u *upstream) {
	s.linkMu.Lock()
	s.srv = u
	s.linkMu.Unlock()
}

// detach hands the connection back at the end of a transaction (transaction mode).
func (s *session) detach() {
	u := s.srv
	u.loopOwner.Store(nil)
	s.disarmReplay()
	s.setLink(nil)
	s.proxy.Observer.Transaction(time.Since(u.attachedAt))
	s.setState(StateIdle)
	u.pc.Release()
}

// upstreamFailed handles a failed upstream read or write, or an upstream out of step: the
// connection is destroyed (in finish) and the client told, unless the server already told it
// (a FATAL relayed just before the connection closed).
func (s *session) upstreamFailed(err error) error {
	if s.srv != nil {
		s.srv.broken = true
	}
	var setErr *injectedSetError
	switch {
	case errors.As(err, &setErr):
		s.fatal(setErr.code, setErr.msg)
	case s.srv == nil || !s.srv.fatalRelayed:
		s.fatal("08006", "server connection lost")
	}
	s.proxy.Log.Debug("upstream connection failed", "err", err)
	return errUpstreamLost
}

// finish ends the session's use of the upstream: an idle connection goes back to the pool
// clean (an open transaction rolled back; in session mode DISCARD ALL); one with a request
// outstanding or half sent is cancelled and destroyed (PostgreSQL rolls back and frees locks
// at once). It releases the session's buffers' claims and returns the cause to report.
func (s *session) finish(cause error) error {
	_ = s.stopWatch()
	if st := s.State(); st != StateClosed && st != StateStartup && st != StateAuth {
		s.setState(StateClosed)
	}
	u := s.srv
	if u == nil {
		return cleanExit(cause)
	}
	s.setLink(nil)
	clean := u.idle() && !u.unsynced && !u.skipping && u.in.empty() && len(u.out) == 0
	u.out = u.out[:0]
	u.in.discard()
	if !clean {
		if u.pending() > 0 && !u.broken {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = u.pc.Cancel(ctx)
			cancel()
		}
		u.pc.Destroy()
		return cleanExit(cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if u.txStatus != 'I' {
		if err := u.pc.Exec(ctx, "ROLLBACK"); err != nil {
			u.pc.Destroy()
			return cleanExit(cause)
		}
	}
	if s.rt.SessionMode {
		if err := u.pc.Exec(ctx, "DISCARD ALL"); err != nil {
			u.pc.Destroy()
			return cleanExit(cause)
		}
		u.pc.Statements().Clear()
	}
	u.pc.Release()
	return cleanExit(cause)
}

func cleanExit(cause error) error {
	if errors.Is(cause, errTerminate) {
		return nil
	}
	return cause
}

// releaseBuffers returns pooled buffers at the end of a session.
func (s *session) releaseBuffers() {
	s.r.keep = -1
	s.r.r = s.r.w
	s.r.release()
	s.w.mu.Lock()
	if s.w.buf != nil {
		putBuf(s.w.buf)
		s.w.buf, s.w.out = nil, nil
	}
	s.w.mu.Unlock()
}

// cancelUpstream sends a cancel request for the query running on the session's upstream
// connection. Holding linkMu keeps the connection attached to this session meanwhile, so the
// cancel cannot reach another client's query.
func (s *session) cancelUpstream() {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.pc.Cancel(ctx)
}
