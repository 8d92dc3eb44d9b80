//go:build linux

package session

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgepool/edgepool/pooler/internal/sockpoll"
	"github.com/edgepool/edgepool/pooler/pool"
)

// The relay loop (Runtime.RelayLoop): busy plain-TCP and TLS sessions in transaction mode are
// run by the reactor's goroutine itself instead of a goroutine each, as PgBouncer runs all of its
// clients. A session enters the loop the first time it waits for its client between
// transactions (enterLoop: its socket leaves Go's netpoller, as parking does) and stays there
// across transactions: the loop reads what the client sent, handles it with the same code as
// the client loop (handle, forward), borrows an idle connection without waiting (or queues for
// one in the pool's FIFO), writes the requests upstream and relays the answers with
// relayBuffered, all on non-blocking descriptors in one epoll set. The client socket stays
// registered (edge-triggered) for the session's life in the loop, so a transaction costs no
// epoll_ctl and no goroutine wake-up.
//
// Anything that could block or that the loop does not do is handed to a goroutine running the
// client loop (handoff), from a state the client loop continues from: a connection not ready
// for the relay (first use, or used by pgconn since), no slot to queue for (the pool may still
// open one), a message larger than the read buffer, COPY, a client that stops reading (what it
// did not take is written first, under clientStallTimeout), a read or write error, a
// timeout the janitor found, a drain or revoked key, a replay, and the end of the session. The
// goroutine gives the session back to the loop when it next waits for its client between
// transactions.
//
// Other goroutines never touch a loop session's relay state: Drain, CloseAll, key revocation
// and the janitor's kicks post a check to the loop (post), and pool notifications come the same
// way. Cancel requests read the attached connection under linkMu, as before.

func (c *loopConn) Read(p []byte) (int, error) { return readNonBlocking(c.fd, p, &c.drained) }

func (c *loopConn) Write(p []byte) (int, error) {
	total := len(p)
	for len(c.pending) == 0 && len(p) > 0 {
		n, errno := rawWrite(c.fd, p)
		switch errno {
		case 0:
			p = p[n:]
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			return total - len(p), errno
		}
		break
	}
	c.pending = append(c.pending, p...)
	return total, nil
}

func (c *loopConn) Close() error                     { return nil }
func (c *loopConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *loopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *loopConn) SetDeadline(time.Time) error      { return nil }
func (c *loopConn) SetReadDeadline(time.Time) error  { return nil }
func (c *loopConn) SetWriteDeadline(time.Time) error { return nil }

func (f *fdReader) Read(p []byte) (int, error) { return readNonBlocking(f.fd, p, &f.drained) }

// readNonBlocking reads fd once: errWouldBlock when nothing is waiting, io.EOF when the peer
// closed; drained tells whether the read took everything that was waiting (it returned less
// than asked).
func readNonBlocking(fd int, p []byte, drained *bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, errno := rawRead(fd, p)
		switch errno {
		case 0:
			*drained = n < len(p)
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			*drained = true
			return 0, errWouldBlock
		}
		return 0, errno
	}
}

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), errno
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return int(r), errno
}

// The loop's part of the reactor (reactor_linux.go).
type loopPart struct {
	wakefd   int
	inboxMu  sync.Mutex
	inbox    []loopEvent
	taken    []loopEvent
	inboxN   atomic.Int32
	sleeping atomic.Bool
	// ups: the upstream connections loop sessions hold now, by descriptor (at most the pool's
	// size). A socket stays in the epoll set after its borrow (until a goroutine takes it
	// back, pool.Sock, or it closes); its events are ignored while no loop session holds it.
	ups map[int]*upstream
	// registerUp, unregisterUp: registerUpstream and unregisterUpstream, made once.
	registerUp   func(fd int) error
	unregisterUp func(fd int)
}

// upTokenBit marks an epoll token that is an upstream descriptor, not a session.
const upTokenBit = 1 << 63

// loopEvents: a loop session's socket and an upstream socket the loop reads.
const loopEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | unix.EPOLLET

// tcp returns the TCP socket under the TLS session, nil while the loop holds it.
func (c *swapConn) tcp() *net.TCPConn {
	switch x := c.Conn.(type) {
	case *net.TCPConn:
		return x
	case *rawTCPConn:
		return x.TCPConn
	}
	return nil
}

// loopIO is what the session's reader and writer use while the loop holds it.
func (s *session) loopIO() net.Conn {
	if s.ev.tls != nil {
		return s.ev.tls
	}
	return &s.ev.conn
}

// loopable reports whether the session may enter the relay loop when it waits for its client
// between transactions.
func (s *session) loopable() bool {
	if !s.rt.RelayLoop || !s.park || s.rt.SessionMode || s.r.buffered() || s.srv != nil {
		return false
	}
	if s.ev != nil && s.ev.stay {
		s.ev.stay = false
		return false
	}
	ok := s.tlsSwap != nil && s.tlsSwap.tcp() != nil
	if s.tlsSwap == nil {
		_, ok = s.conn.(*net.TCPConn)
	}
	return ok && getReactor() != nil
}

// enterLoop hands the session to the relay loop and reports whether it did; then the calling
// goroutine must leave the session alone (return errParked); else it carries on.
func (s *session) enterLoop() bool {
	r := getReactor()
	var tc *net.TCPConn
	if s.tlsSwap != nil {
		tc = s.tlsSwap.tcp()
	} else {
		tc = s.conn.(*net.TCPConn)
	}
	fd, err := sockpoll.Dup(tc)
	if err != nil {
		return false
	}
	s.parkFD = int32(fd) + 1 // also where leaveLoopSocket finds it if the loop cannot take it
	if s.tlsSwap == nil && s.parkNext {
		s.ev = nil // made again, for this descriptor, when the client speaks
	} else {
		ev := r.state(s)
		ev.conn.fd, ev.conn.pending, ev.conn.drained, ev.more = fd, ev.conn.pending[:0], false, false
		if s.tlsSwap != nil {
			// The TLS state stays in the session's tls.Conn; only the socket under it changes.
			ev.tls = s.conn
			s.tlsSwap.Conn = &ev.conn
		}
		io := s.loopIO()
		s.r.conn, s.r.raw = io, nil
		s.w.conn, s.w.raw = io, nil
	}
	s.setConn(nil)
	_ = tc.Close() // the duplicate keeps the socket open
	s.enter(phaseIdle)
	if s.parkNext {
		// Just logged in (or kicked as idle): wait holding no reader, writer, buffer or loop
		// state, as a parked session does; the first event takes them again (clientReady).
		// Done before the socket is registered: from then on the loop may run the session.
		s.parkNext = false
		s.r.release()
		s.parkIO()
		s.enter(phaseParked)
	}
	// Registered edge-triggered for its whole stay in the loop.
	if !r.register(s, fd, loopEvents, true) {
		_ = s.leaveLoopSocket() // on failure the socket is a goneConn: the next read ends the session
		return false
	}
	s.proxy.loopEntries.Add(1)
	// Drain, CloseRevoked or CloseAll may have looked for this session before it was in the
	// loop; they set their flag first, so this check cannot miss both.
	if s.ending() || s.closeReq.Load() {
		r.post(loopEvent{s: s, kind: evCheck})
	}
	if s.tlsSwap != nil { // (s.ev is the loop's now)
		// crypto/tls may hold bytes read from the socket already, which no event announces.
		r.post(loopEvent{s: s, kind: evRead})
	}
	return true
}

// leaveLoopSocket gives a session leaving the loop (or failing to enter it) a net.Conn made
// again from its descriptor, under its TLS conn if it has one, and its reader and writer back.
func (s *session) leaveLoopSocket() error {
	err := s.unparkSocket()
	if err != nil {
		s.setConn(goneConn{})
	}
	if s.ev != nil && s.ev.tls != nil {
		s.tlsSwap.Conn = withRawIO(s.conn)
		s.setConn(s.ev.tls)
		s.ev.tls = nil
	}
	if s.r == nil {
		s.unparkIO()
	} else {
		s.r.conn, s.w.conn = s.conn, s.conn
	}
	return err
}

// state returns the session's loop state, made on first use (and again after an idle plain
// session gave it up: it then holds only its descriptor, s.parkFD).
func (r *reactor) state(s *session) *loopState {
	if s.ev == nil {
		s.ev = &loopState{}
		s.ev.notify = func(c *pool.Conn) { r.post(loopEvent{s: s, c: c, kind: evConn}) }
		s.ev.conn.fd = int(s.parkFD) - 1
	}
	return s.ev
}

// post hands an event to the loop from any goroutine (the loop itself included). It may be
// called with the pool's lock held (pool notifications): it only queues and wakes.
func (r *reactor) post(ev loopEvent) {
	r.inboxMu.Lock()
	r.inbox = append(r.inbox, ev)
	r.inboxN.Add(1)
	r.inboxMu.Unlock()
	if r.sleeping.Load() {
		one := [8]byte{1}
		_, _ = rawWrite(r.wakefd, one[:])
	}
}

// drainInbox handles what other goroutines posted.
func (r *reactor) drainInbox() {
	if r.inboxN.Load() == 0 {
		return
	}
	r.inboxMu.Lock()
	r.taken, r.inbox = r.inbox, r.taken[:0]
	r.inboxN.Store(0)
	r.inboxMu.Unlock()
	for i := range r.taken {
		ev := r.taken[i]
		r.taken[i] = loopEvent{}
		r.guard(ev.s, func() { r.handleEvent(ev) })
	}
}

func (r *reactor) handleEvent(ev loopEvent) {
	s := ev.s
	switch ev.kind {
	case evConn:
		s.ev.wait = nil
		if !s.inLoop.Load() || s.ev.leaving != nil {
			if ev.c != nil {
				ev.c.Release()
			}
			if then := s.ev.leaving; then != nil && s.inLoop.Load() {
				s.ev.leaving = nil
				s.setState(StateIdle) // it no longer waits for a connection
				r.handoff(s, then)
			}
			return
		}
		if ev.c == nil {
			r.handoff(s, nil) // the goroutine waits (or opens a connection) with the same deadline
			return
		}
		s.ev.pre = ev.c
		r.advance(s)
	case evCheck:
		if s.inLoop.Load() {
			r.check(s)
		}
	case evRead:
		if s.inLoop.Load() && s.ev.wait == nil {
			r.clientReady(s)
		}
	}
}

// guard runs f for s; a panic ends only that session.
func (r *reactor) guard(s *session, f func()) {
	defer func() {
		if p := recover(); p != nil {
			if s.inLoop.Load() {
				r.handoff(s, func() error { s.onPanic(p); return errParked })
			}
		}
	}()
	f()
}

// clientReady: the client's socket is readable (or hung up).
func (r *reactor) clientReady(s *session) {
	r.state(s)
	if s.r == nil {
		s.unparkIO()
		io := s.loopIO()
		s.r.conn, s.r.raw, s.w.conn, s.w.raw = io, nil, io, nil
	}
	if err := r.readClient(s); err != nil {
		r.handoff(s, nil) // the goroutine's own read finds the same end and ends the session
		return
	}
	r.advance(s)
}

// readClient reads until the socket is drained (TLS: until crypto/tls has nothing more
// either) or the buffer is full (more: read again once there is room).
func (r *reactor) readClient(s *session) error {
	s.ev.more = false
	for {
		err := s.r.fill()
		if errors.Is(err, errWouldBlock) {
			return nil
		}
		if err != nil {
			return err
		}
		if s.r.w == len(*s.r.buf) {
			s.ev.more = true
			return nil
		}
		if s.ev.tls == nil && s.ev.conn.drained {
			return nil
		}
	}
}

// advance runs the session as far as it goes without waiting, then acts on why it stopped.
func (r *reactor) advance(s *session) {
	for {
		err := s.loopStep(r)
		switch {
		case err == nil:
			// The client may have more than the buffer held: read it now that there is room.
			if s.ev.more && s.r != nil && s.r.buf != nil && (s.srv == nil || s.srv.owed == 0) {
				if rerr := r.readClient(s); rerr != nil {
					r.handoff(s, nil)
					return
				}
				if s.r.w > s.r.r {
					continue
				}
			}
			return
		case errors.Is(err, errLoopWait):
			r.queue(s)
		case errors.Is(err, errLoopHandoff):
			r.handoff(s, nil)
		case errors.Is(err, errLoopEnding):
			r.handoff(s, s.endNow)
		default:
			r.handoff(s, func() error { return err })
		}
		return
	}
}

// loopStep is the client loop's serveBuffered and exchange for the relay loop: handle the
// complete messages buffered, send them upstream, and hand the connection back when the
// transaction is over; it returns when it must wait for the upstream, the client or a
// connection.
func (s *session) loopStep(r *reactor) error {
	for {
		if s.ev.wait != nil || s.ev.leaving != nil {
			return nil // queued for a connection
		}
		if len(s.ev.conn.pending) > 0 {
			return errLoopHandoff // the client is not reading: a goroutine waits for it
		}
		if s.srv != nil {
			if s.srv.copyIn {
				return errLoopHandoff
			}
			if s.srv.owed > 0 {
				s.enter(phaseServerWait)
				return nil
			}
		}
		if s.r == nil {
			return nil
		}
		handled, err := s.loopHandle(r)
		if err != nil {
			return err
		}
		if len(s.ev.conn.pending) > 0 {
			return errLoopHandoff
		}
		if s.srv == nil {
			s.enter(phaseIdle)
			if s.ending() && !s.r.buffered() {
				return errLoopEnding
			}
			return nil
		}
		if err := s.loopFlushOut(); err != nil {
			return err
		}
		u := s.srv
		switch {
		case u.owed > 0:
			continue // wait for its answers
		case u.copyIn:
			return errLoopHandoff
		case s.canDetach():
			s.detach()
			r.disown(u)
			continue // pipelined requests may follow
		}
		s.enter(s.attachedPhase()) // inside a transaction or a batch: the janitor's timeouts apply
		if !handled {
			return nil
		}
	}
}

// loopHandle handles the complete messages buffered (until enough is waiting to be sent) and
// reports whether it handled any.
func (s *session) loopHandle(r *reactor) (bool, error) {
	handled := false
	for {
		typ, n, ok := s.r.header()
		if !ok {
			return handled, nil
		}
		if n < 0 || n > s.r.maxBody || 5+n > readBufSize {
			return handled, errLoopHandoff // an error, or a message to stream: the client loop's
		}
		if !s.r.complete(n) {
			return handled, nil
		}
		start := s.r.r
		attached := s.srv != nil
		err := s.handle(s.ctx, typ, s.r.take(n), start)
		if errors.Is(err, errLoopWait) || errors.Is(err, errLoopHandoff) {
			s.r.r = start
			return handled, err
		}
		if err != nil {
			return handled, err
		}
		handled = true
		if !attached && s.srv != nil {
			if err := r.ownUpstream(s); err != nil {
				return handled, err
			}
		}
		if s.srv != nil && len(s.srv.out) >= outFlushAt {
			return handled, nil
		}
		if len(s.ev.conn.pending) > 0 {
			return handled, nil
		}
	}
}

// loopFlushOut writes the forwarded requests upstream without waiting; what the socket does
// not take now is left for a goroutine (errLoopHandoff), which writes it first.
func (s *session) loopFlushOut() error {
	u := s.srv
	for len(u.out) > 0 {
		n, errno := rawWrite(u.loopFD-1, u.out)
		switch errno {
		case 0:
			u.out = u.out[:copy(u.out, u.out[n:])]
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return errLoopHandoff
		}
		u.out = u.out[:0]
		return s.upstreamWriteFailed(errno)
	}
	return nil
}

// ownUpstream marks the attached connection as the loop's for this borrow. Its socket leaves
// Go's netpoller for the loop's epoll set (edge-triggered) the first time, and stays there
// across borrows until a goroutine uses it through net.Conn again (pool.Sock): the netpoller
// would otherwise wake for every answer the server sends, with nothing to run.
func (r *reactor) ownUpstream(s *session) error {
	u := s.srv
	if u.sock == nil {
		return errLoopHandoff // TLS upstream: the client loop relays it
	}
	fd, err := u.sock.Detach(r.registerUp, r.unregisterUp)
	if err != nil {
		return errLoopHandoff
	}
	u.loopFD = fd + 1
	u.loopIn.fd = fd
	r.ups[fd] = u
	u.loopOwner.Store(s)
	return nil
}

// registerUpstream and unregisterUpstream add an upstream socket to the epoll set and take it
// out (pool.Sock.Detach; method values in registerUp and unregisterUp).
func (r *reactor) registerUpstream(fd int) error {
	ev := tokenEvent(loopEvents, upTokenBit|uint64(fd))
	return syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

func (r *reactor) unregisterUpstream(fd int) {
	_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
}

// disown forgets an upstream connection a loop session no longer holds (handed back, or the
// session handed off).
func (r *reactor) disown(u *upstream) {
	u.loopOwner.Store(nil)
	delete(r.ups, u.loopFD-1)
}

// upstreamReady: an upstream socket is readable; relay it if a loop session holds it.
func (r *reactor) upstreamReady(fd int) {
	u := r.ups[fd]
	if u == nil {
		return
	}
	s := u.loopOwner.Load()
	if s == nil || !s.inLoop.Load() || s.srv != u {
		return
	}
	r.guard(s, func() { r.relayUpstream(s, u) })
}

func (r *reactor) relayUpstream(s *session, u *upstream) {
	for s.srv == u {
		err := u.in.fill(&u.loopIn)
		if errors.Is(err, errWouldBlock) {
			break
		}
		if err != nil {
			lost := s.upstreamFailed(err)
			r.handoff(s, func() error { return lost })
			return
		}
		err = s.relayBuffered(true)
		if s.srv != u {
			r.disown(u) // the transaction ended: the connection went back to the pool
		}
		if err != nil {
			r.handoff(s, func() error { return err })
			return
		}
		if len(s.ev.conn.pending) > 0 {
			r.handoff(s, nil) // the client stopped reading: a goroutine waits for it
			return
		}
		if u.loopIn.drained {
			break
		}
	}
	r.advance(s)
}

// queue puts the session in the pool's line for a connection; the pool's notification comes
// back through post.
func (r *reactor) queue(s *session) {
	if s.ev.since.IsZero() {
		s.ev.since = time.Now()
	}
	w := s.proxy.Pool.Queue(s.ev.since, s.ev.notify)
	if w == nil {
		r.handoff(s, nil) // the pool can open a connection (or is paused): the client loop waits
		return
	}
	s.ev.wait = w
	s.setState(StateWaiting)
	s.enter(phaseBusy)
}

// check acts on what other goroutines flagged: a close, a kick from the janitor, a drain.
func (r *reactor) check(s *session) {
	r.state(s)
	if s.closeReq.Load() {
		r.handoff(s, func() error { return errors.New("closed by the pooler") })
		return
	}
	k := s.kick.Load()
	switch uint32(k >> 56) {
	case kickPark:
		s.takeKick()
		if s.srv == nil && s.ev.wait == nil && s.r != nil && !s.r.buffered() {
			s.r.release()
			s.parkIO() // an idle client in the loop keeps no reader, writer, buffer or loop state
			if s.ev.tls == nil {
				s.ev = nil
			}
			s.enter(phaseParked)
		}
	case kickIdleTx, kickStall:
		ph, since := s.activity.get()
		r.handoff(s, func() error { return s.readFailed(loopTimeout{}, false, ph, since) })
		return
	case kickEnd:
		s.takeKick()
	}
	if s.ending() && s.srv == nil && s.ev.wait == nil && (s.r == nil || !s.r.buffered()) {
		r.handoff(s, s.endNow)
	}
}

// handoff takes the session out of the loop and carries on with then (nil: the client loop) on
// a goroutine, with its net.Conn made again.
func (r *reactor) handoff(s *session, then func() error) {
	r.state(s)
	if s.ev.wait != nil {
		if !s.ev.wait.Cancel() {
			s.ev.leaving = then // a connection is on its way: take it back first (evConn)
			if s.ev.leaving == nil {
				s.ev.leaving = func() error { return nil }
			}
			return
		}
		s.ev.wait = nil
		s.setState(StateIdle)
	}
	s.proxy.loopHandoffs.Add(1)
	s.ev.stay = true
	r.mu.Lock()
	r.remove(s.parkTok, s)
	s.inLoop.Store(false)
	r.mu.Unlock()
	if s.srv != nil && s.srv.loopOwner.Load() == s {
		r.disown(s.srv)
	}
	go s.resumeFromLoop(then)
}

// resumeFromLoop continues a session the loop handed off, on its own goroutine.
func (s *session) resumeFromLoop(then func() error) {
	defer func() {
		if p := recover(); p != nil {
			s.onPanic(p)
		}
	}()
	if err := s.leaveLoopSocket(); err != nil {
		s.endAfterError(err)
		return
	}
	if p := s.ev.conn.pending; len(p) > 0 {
		write := s.w.write
		if s.tlsSwap != nil {
			write = s.tlsSwap.Write // already encrypted by crypto/tls
		}
		werr := s.writeClientVia(write, p, true)
		s.ev.conn.pending = nil
		if werr != nil {
			s.endAfterError(fmt.Errorf("write client: %w", werr))
			return
		}
	}
	var err error
	if then != nil {
		err = then()
	}
	s.carryOn(err)
}
