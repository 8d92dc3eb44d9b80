package session

import (
	"net"
	"time"

	"github.com/edgepool/edgepool/pooler/internal/sockpoll"
)

// The janitor enforces what the client loop cannot watch while it waits on one side (as
// PgBouncer's janitor does): every tick it looks at each session's published phase (state.go)
// and how long it has been in it. Sessions publish with one atomic store, so the hot path pays
// nothing for timeouts: no timers, no deadlines per read.
//
//   - idle between transactions for parkAfter: kicked off its goroutine (parked);
//   - idle inside a transaction for idleTransactionTimeout: FATAL 25P03;
//   - holding a connection with a request left unfinished (extended-protocol messages without
//     Sync, a message cut off half way, COPY data stopped) or not reading the answer, for
//     clientStallTimeout: cut, and its connection cancelled or closed so the pool gets it back;
//   - waiting for a long query: when the client hangs up, the query is cancelled.
//
// A kick is a read deadline in the past plus a reason; the session checks the reason against
// its current phase (kickAt), so a kick that raced with progress is ignored.

// Kick reasons.
const (
	kickNone uint32 = iota
	kickPark
	kickEnd // drain or a revoked key: end if between transactions (revoke.go)
	kickIdleTx
	kickStall
	kickUpstream
	kickClose
)

// parkAfter is how long a session may wait for its client on its own goroutine between
// transactions before it is parked. Busy clients never wait that long, so they are never
// moved in and out of the reactor (an epoll_ctl and a goroutine per transaction).
const parkAfter = time.Second

// kickStamp identifies a wait: its phase and janitor-clock start (below the top byte).
func kickStamp(p phase, since int64) uint64 { return (uint64(since)<<8 | uint64(p)) & (1<<56 - 1) }

// kickRead cuts the session's blocking client read short with reason; at is the activity the
// kicker saw (0 for unconditional kicks).
func (s *session) kickRead(reason uint32, at uint64) {
	s.setKick(reason, at)
	if s.inLoop.Load() {
		s.postCheck() // the relay loop reads the kick
		return
	}
	s.withConn(func(c net.Conn) { _ = c.SetReadDeadline(time.Unix(1, 0)) })
}

func (s *session) setKick(reason uint32, at uint64) { s.kick.Store(uint64(reason)<<56 | at) }

func (s *session) takeKick() (uint32, uint64) {
	k := s.kick.Swap(0)
	return uint32(k >> 56), k & (1<<56 - 1)
}

// startJanitor runs the janitor while the proxy has sessions. Callers hold p.mu.
func (p *Proxy) startJanitorLocked() {
	if p.janitorOn {
		return
	}
	p.janitorOn = true
	p.clock.Store(p.sinceEpoch())
	go p.janitor()
}

func (p *Proxy) sinceEpoch() int64 { return time.Since(p.epoch).Milliseconds() }

// janitorTick is a quarter of the shortest timeout the janitor enforces, so each is met
// within a quarter of its length, between 10 ms and 250 ms.
func janitorTick(rt *Runtime) time.Duration {
	t := parkAfter
	for _, d := range []time.Duration{rt.IdleTransactionTimeout, rt.ClientStallTimeout} {
		if d > 0 && d < t {
			t = d
		}
	}
	return min(max(t/4, 10*time.Millisecond), 250*time.Millisecond)
}

func (p *Proxy) janitor() {
	var list []*session
	for {
		rt := p.Runtime()
		tick := janitorTick(rt)
		time.Sleep(tick)
		now := p.sinceEpoch()
		p.clock.Store(now)
		p.mu.Lock()
		if len(p.sessions) == 0 {
			p.janitorOn = false
			p.mu.Unlock()
			return
		}
		list = list[:0]
		for _, s := range p.sessions {
			list = append(list, s)
		}
		p.mu.Unlock()
		for i, s := range list {
			p.inspect(s, now, tick.Milliseconds())
			list[i] = nil
		}
	}
}

// inspect applies the timeouts to one session.
func (p *Proxy) inspect(s *session, now, tick int64) {
	ph, since := s.activity.get()
	elapsed := now - since
	over := func(d time.Duration) bool { return d > 0 && elapsed > d.Milliseconds()+tick }
	switch ph {
	case phaseIdle:
		if elapsed >= parkAfter.Milliseconds() {
			s.kickRead(kickPark, kickStamp(ph, since))
		}
	case phaseIdleInTx:
		if over(s.rt.IdleTransactionTimeout) {
			s.kickRead(kickIdleTx, kickStamp(ph, since))
		}
	case phaseUnsynced, phaseCopyIn:
		if over(s.rt.ClientStallTimeout) {
			s.kickRead(kickStall, kickStamp(ph, since))
		}
	case phaseClientWrite:
		if over(s.rt.ClientStallTimeout) {
			// Not reading: its socket is full, so no FATAL can reach it. Fail the write.
			p.Log.Info("client not reading its results: disconnecting", "pid", s.pid,
				"clientStallTimeout", s.rt.ClientStallTimeout.String())
			s.setKick(kickStall, kickStamp(ph, since))
			s.withConn(func(c net.Conn) { _ = c.SetWriteDeadline(time.Unix(1, 0)) })
		}
	case phaseServerWait:
		if elapsed < tick || s.hungUp.Load() {
			break
		}
		s.withConn(func(c net.Conn) {
			if clientHungUp(c) {
				s.hungUp.Store(true)
				go s.cancelUpstream() // its answer then finds the client gone
			}
		})
	}
}

// clientHungUp reports, without blocking, whether the client closed its end (or the connection
// failed); nothing it has sent is consumed.
func clientHungUp(conn net.Conn) bool {
	revents, known := sockpoll.Pending(conn, sockpoll.RDHup)
	return known && revents&(sockpoll.RDHup|sockpoll.Hup|sockpoll.Err) != 0
}
