package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/pooler/pool"
)

// The client loop runs a session after startup, on one goroutine at a time, and owns all of
// its relay state. It is half-duplex, like PostgreSQL itself: it reads what the client has
// sent and forwards it (forward.go); when the server owes answers it sends the requests in one
// write and relays the answers (upstream.go) until nothing is owed; then it waits for the
// client again. Per transaction that is one read and one write in each direction, no other
// goroutine, no lock held across I/O and no allocation.
//
// What the loop does not watch while it waits on one side is covered by the janitor
// (janitor.go): a client that hangs up during a long query (its query is cancelled), one that
// stops mid-request or stops reading (cut after clientStallTimeout), one idle inside a
// transaction (idleTransactionTimeout), and idle sessions, which it sends off their goroutine
// (parked in the reactor). In session mode a watcher relays what the server says while the
// client is idle (watch.go).

var (
	errTerminate = errors.New("client terminated")
	// errParked: the session now waits without this goroutine; it must return at once.
	errParked = errors.New("session parked")
	// errReplay: the connection was found dead before it answered anything; the request goes
	// to another connection.
	errReplay = errors.New("replay on another connection")
	// errEnded: the session already told the client why it ends.
	errEnded = errors.New("session ended")
)

// Limits of the relay.
const (
	// outFlushAt: forwarded messages are sent upstream once this many bytes are waiting; the
	// server's answers to them are relayed before more is forwarded, so neither side's socket
	// buffer fills up while the other is not read.
	outFlushAt = 4 << 10
	// largeCheckBytes: how much of a message larger than the read buffer is checked
	// (checkLargeStart) before it is streamed upstream.
	largeCheckBytes = 1 << 10
)

// loop is the client loop: forward what the client sent, exchange with the upstream, wait for
// the client. It returns when the session ends or parks.
func (s *session) loop(ctx context.Context) {
	for {
		err := s.serveBuffered(ctx)
		if err == nil {
			err = s.waitClient()
		}
		if !s.afterRound(err) {
			return
		}
	}
}

// afterRound acts on how a round of the client loop ended and reports whether the loop goes on
// on this goroutine (not when the session parked or ended).
func (s *session) afterRound(err error) bool {
	switch {
	case err == nil:
	case errors.Is(err, errParked):
		return false
	case errors.Is(err, errReplay):
		s.replayOnFreshConnection()
	default:
		s.endAfterError(err)
		return false
	}
	return true
}

// serveBuffered handles every complete message the client has sent, then lets the upstream
// answer what it owes.
func (s *session) serveBuffered(ctx context.Context) error {
	for {
		typ, n, ok := s.r.header()
		if !ok {
			break
		}
		if n < 0 || n > s.r.maxBody {
			return fmt.Errorf("%w: message %q of %d bytes (limit %d)", ErrProtocol, typ, n, s.r.maxBody)
		}
		if !s.r.complete(n) {
			if 5+n <= readBufSize {
				break // the rest is on its way
			}
			if err := s.handleLarge(ctx, typ, n); err != nil {
				return err
			}
			continue
		}
		start := s.r.r
		if err := s.handle(ctx, typ, s.r.take(n), start); err != nil {
			return err
		}
		if s.srv != nil && len(s.srv.out) >= outFlushAt {
			if err := s.exchange(); err != nil {
				return err
			}
		}
	}
	if s.srv != nil {
		return s.exchange()
	}
	return nil
}

// handle deals with one whole client message; start is its offset in the read buffer (where a
// replay restarts).
func (s *session) handle(ctx context.Context, typ byte, body []byte, start int) error {
	if typ == 'X' {
		return errTerminate
	}
	if err := checkMessage(typ, body); err != nil {
		return err // garbage never reaches (or takes) an upstream connection
	}
	s.parkNext = false
	if s.skipUntilSync {
		if typ == 'S' {
			s.skipUntilSync = false
			return s.w.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		}
		return nil
	}
	if s.srv == nil {
		if done, err := s.answerIdle(typ, body); done || err != nil {
			return err
		}
		if !validFrontendType(typ) {
			return protocolError(fmt.Sprintf("invalid frontend message type %q", typ))
		}
		if err := s.attachFor(ctx, typ, start); err != nil {
			return err
		}
		if s.srv == nil {
			return nil // no connection: the client got an error
		}
	}
	return s.forward(typ, body)
}

// attachFor borrows a connection for a message that needs one. When none comes, the client
// gets the error (and, inside an extended-protocol batch, the batch is skipped to its Sync);
// the session stays.
func (s *session) attachFor(ctx context.Context, typ byte, start int) error {
	if s.ending() {
		return s.endNow()
	}
	err := s.attach(ctx, start)
	if err == nil || errors.Is(err, errLoopWait) || errors.Is(err, errLoopHandoff) {
		return err
	}
	pgErr := errorFor(err, "08006", "cannot reach the upstream database")
	if errors.Is(err, pool.ErrClosed) || ctx.Err() != nil {
		s.sendError(pgErr, "FATAL")
		return err
	}
	if typ == 'Q' || typ == 'F' {
		return s.w.send(pgErrorResponse(pgErr, "ERROR"), &pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
	s.skipUntilSync = true
	return s.w.send(pgErrorResponse(pgErr, "ERROR"))
}

// exchange sends what was forwarded and relays the answers the server owes, until it owes
// nothing (or waits for COPY data). In transaction mode the connection goes back to the pool
// as soon as a transaction ends with nothing outstanding.
func (s *session) exchange() error {
	for s.srv != nil {
		if err := s.flushOut(); err != nil {
			return err
		}
		if s.srv.owed == 0 || s.srv.copyIn {
			if s.canDetach() {
				s.detach()
			}
			return nil
		}
		if err := s.relayOnce(); err != nil {
			return err
		}
	}
	return nil
}

// flushOut writes the forwarded messages upstream.
func (s *session) flushOut() error {
	if len(s.srv.out) == 0 {
		return nil
	}
	err := s.writeUpstream(s.srv.out)
	s.srv.out = s.srv.out[:0]
	return err
}

func (s *session) writeUpstream(b []byte) error {
	s.enter(phaseServerWrite)
	_, err := s.srv.writer().Write(b)
	s.enter(phaseBusy)
	if err != nil {
		return s.upstreamWriteFailed(err)
	}
	return nil
}

// upstreamWriteFailed handles a failed write of requests upstream.
func (s *session) upstreamWriteFailed(err error) error {
	if s.replayable() {
		return errReplay // the connection was closed before it got the request
	}
	return s.upstreamFailed(fmt.Errorf("write upstream: %w", err))
}

// canDetach reports whether the attached connection can go back to the pool now: transaction
// mode, the transaction over, nothing outstanding or half-sent in either direction.
func (s *session) canDetach() bool {
	u := s.srv
	return !s.rt.SessionMode && u.idle() && u.txStatus == 'I' && !u.unsynced && !u.skipping &&
		s.srv.in.empty() && len(s.srv.out) == 0
}

// waitClient waits for more bytes from the client. Between transactions an idle session is
// parked instead (no goroutine, no buffer), at once after startup and when the janitor says it
// has been idle for a while.
func (s *session) waitClient() error {
	// The phase is published before ending() is read, and Drain and CloseRevoked set their
	// flag before they read the phase (kickIfIdle): one of the two sees the other.
	if s.srv != nil {
		p := s.attachedPhase()
		s.enter(p)
		if p == phaseSessionIdle && !s.r.buffered() {
			if s.ending() { // session mode: a drain or revoked key ends it between transactions
				return s.endNow()
			}
			s.startWatch()
		}
	} else {
		if s.loopable() && s.enterLoop() {
			return errParked
		}
		if s.parkNext && !s.r.buffered() {
			s.r.release()
			return s.parkIdle()
		}
		s.enter(phaseIdle) // the read buffer stays: a busy client is back soon
		if s.ending() && !s.r.buffered() {
			return s.endNow()
		}
	}
	err := s.r.fill()
	ph, since := s.activity.get()
	s.enter(phaseBusy)
	if werr := s.stopWatch(); werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return s.readFailed(err, true, ph, since)
	}
	return nil
}

// attachedPhase is what an attached session waiting for its client is doing, which decides the
// timeout that applies.
func (s *session) attachedPhase() phase {
	u := s.srv
	switch {
	case u.copyIn:
		return phaseCopyIn
	case u.unsynced || u.skipping || u.pending() > 0 || s.r.buffered():
		return phaseUnsynced
	case u.txStatus != 'I':
		return phaseIdleInTx
	case s.rt.SessionMode:
		return phaseSessionIdle
	}
	return phaseBusy
}

// readFailed decides what a failed client read means: the client left, or a kick (a read
// deadline set by the janitor or Drain) asks the session to park (only when mayPark: between
// messages, on a goroutine it may leave), end, or go on.
func (s *session) readFailed(err error, mayPark bool, p phase, since int64) error {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		if errors.Is(err, errUpstreamLost) {
			return err
		}
		if s.r.buffered() && errors.Is(err, io.EOF) {
			return fmt.Errorf("client closed mid-message: %w", err)
		}
		return err
	}
	reason, at := s.takeKick()
	_ = s.conn.SetReadDeadline(time.Time{})
	stillSo := at == kickStamp(p, since) // the kick is about the wait that just ended
	switch reason {
	case kickClose:
		return errors.New("closed by the pooler")
	case kickEnd:
		if s.srv == nil || s.attachedPhase() == phaseSessionIdle {
			return s.endNow()
		}
	case kickPark:
		if mayPark && s.srv == nil && !s.r.buffered() {
			s.r.release()
			return s.parkIdle()
		}
	case kickIdleTx:
		if stillSo {
			s.fatal("25P03", "terminating connection due to idle-in-transaction timeout")
			return errEnded
		}
	case kickStall:
		if stillSo {
			s.fatal("08P01", fmt.Sprintf("terminating connection: the client left a request unfinished (%s) for longer than clientStallTimeout (%s) while holding a server connection",
				p, s.rt.ClientStallTimeout))
			return errEnded
		}
	case kickUpstream:
		return errUpstreamLost
	}
	return nil // a stale kick: carry on
}

// handleLarge passes on a client message larger than the read buffer in pieces, so memory
// does not grow with the largest message a client sends. Only messages that are large by
// nature are accepted: query texts, parameters, COPY data; a named Parse is held whole (its
// text is the shared statement's key), up to the statement registry's limit.
func (s *session) handleLarge(ctx context.Context, typ byte, n int) error {
	switch typ {
	case 'Q', 'E', 'F', 'B', 'P', 'd':
	default:
		return fmt.Errorf("%w: message %q of %d bytes", ErrProtocol, typ, n)
	}
	if err := s.checkLargeStart(typ, n); err != nil {
		return err
	}
	if s.skipUntilSync {
		return s.discardClientBytes(5 + n)
	}
	s.parkNext = false
	if typ == 'P' {
		if named, err := s.namedParseAhead(); err != nil || named {
			if err != nil {
				return err
			}
			return s.handleWholeParse(ctx, n)
		}
	}
	// Nothing may be owed while the server reads a long message: it could be blocked writing
	// answers this loop is not reading.
	if s.srv != nil {
		if err := s.exchange(); err != nil {
			return err
		}
	}
	if s.srv == nil && typ == 'd' {
		return s.discardClientBytes(5 + n) // PostgreSQL ignores COPY data outside COPY (answerIdle)
	}
	if s.srv == nil {
		if err := s.attachFor(ctx, typ, s.r.r); err != nil {
			return err
		}
		if s.srv == nil {
			return s.discardClientBytes(5 + n)
		}
	}
	s.disarmReplay()
	u := s.srv
	if u.skipping || (u.copyIn && typ != 'd') {
		if u.copyIn {
			return fmt.Errorf("%w: message %q during COPY FROM STDIN", ErrProtocol, typ)
		}
		return s.discardClientBytes(5 + n)
	}
	remaining := 5 + n
	if typ == 'B' {
		k, err := s.rewriteBindStart()
		if err != nil {
			return err
		}
		remaining -= k
	}
	if err := s.flushOut(); err != nil {
		return err
	}
	for remaining > 0 {
		if !s.r.buffered() {
			if err := s.fillMidMessage(); err != nil {
				return err
			}
			continue
		}
		chunk := s.r.unread()
		chunk = chunk[:min(len(chunk), remaining)]
		if err := s.writeUpstream(chunk); err != nil {
			return err
		}
		s.r.consume(len(chunk))
		remaining -= len(chunk)
	}
	switch typ {
	case 'Q':
		u.push(request{kind: reqQuery})
		u.flush()
	case 'F':
		u.push(request{kind: reqFunction})
		u.flush()
	case 'E':
		u.unsynced = true
		u.push(request{kind: reqExecute})
	case 'B':
		u.unsynced = true
		u.push(request{kind: reqBind})
	case 'P':
		u.unsynced = true
		u.push(request{kind: reqParse})
	}
	return nil
}

// checkLargeStart checks the start of a message larger than the read buffer
// (checkMessageStart) once largeCheckBytes of its body are buffered, before any of it is
// passed on or it takes a connection.
func (s *session) checkLargeStart(typ byte, n int) error {
	want := 5 + min(n, largeCheckBytes)
	if err := s.bufferAhead(func(b []byte) bool { return len(b) >= want }); err != nil {
		return err
	}
	return checkMessageStart(typ, s.r.unread()[5:], n)
}

// fillMidMessage reads more of a message that is half through: a client that stops here while
// holding a connection is stalled (the janitor cuts it), and a kick can only end the session
// or be ignored.
func (s *session) fillMidMessage() error {
	if s.srv != nil {
		s.enter(phaseUnsynced)
	}
	err := s.r.fill()
	ph, since := s.activity.get()
	s.enter(phaseBusy)
	if err != nil {
		return s.readFailed(err, false, ph, since)
	}
	return nil
}

// namedParseAhead reports whether the large Parse at the read position names its statement.
func (s *session) namedParseAhead() (bool, error) {
	if err := s.bufferAhead(func(b []byte) bool { return len(b) > 5 }); err != nil {
		return false, err
	}
	return s.r.unread()[5] != 0, nil
}

// bufferAhead reads until enough(unread bytes) holds, for the start of a message larger than
// the buffer; it fails when the buffer fills up first.
func (s *session) bufferAhead(enough func([]byte) bool) error {
	for !enough(s.r.unread()) {
		if len(s.r.unread()) >= readBufSize {
			return protocolError("message start too long")
		}
		if err := s.fillMidMessage(); err != nil {
			return err
		}
	}
	return nil
}

// handleWholeParse reads a named Parse larger than the read buffer whole (bounded by the
// statement registry's limit) and handles it like any other.
func (s *session) handleWholeParse(ctx context.Context, n int) error {
	if int64(n) > s.proxy.stmts.maxStatement() {
		s.fatal("54000", (&tooLargeError{what: "prepared statement", n: n}).Error())
		return errEnded
	}
	body := make([]byte, n)
	k := copy(body, s.r.unread()[5:])
	s.r.consume(5 + k)
	for k < n {
		if !s.r.buffered() {
			if err := s.fillMidMessage(); err != nil {
				return err
			}
			continue
		}
		c := copy(body[k:], s.r.unread())
		s.r.consume(c)
		k += c
	}
	s.disarmReplay()
	return s.handle(ctx, 'P', body, -1)
}

// rewriteBindStart writes the start of a large Bind (header, portal, statement) with the
// statement's server name, and consumes that much; it returns the original bytes consumed.
func (s *session) rewriteBindStart() (int, error) {
	names := func(b []byte) bool {
		_, rest, ok := cstringBytes(b[5:])
		if ok {
			_, _, ok = cstringBytes(rest)
		}
		return ok
	}
	if err := s.bufferAhead(names); err != nil {
		return 0, err
	}
	b := s.r.unread()
	n := int(int32(uint32(b[1])<<24|uint32(b[2])<<16|uint32(b[3])<<8|uint32(b[4]))) - 4
	portal, rest, ok := cstringBytes(b[5:])
	if !ok {
		return 0, protocolError("Bind names too long")
	}
	stmt, rest, ok := cstringBytes(rest)
	if !ok {
		return 0, protocolError("Bind names too long")
	}
	consumed := len(b) - len(rest)
	def := s.stmts[string(stmt)]
	if len(stmt) == 0 || def == nil {
		return 0, nil // passed on as it is
	}
	s.ensurePrepared(def)
	s.srv.out = appendBind(s.srv.out, portal, def.serverName, 5+n-consumed)
	s.r.consume(consumed)
	return consumed, nil
}

// discardClientBytes drops n bytes of a message the session does not pass on.
func (s *session) discardClientBytes(n int) error {
	for n > 0 {
		if !s.r.buffered() {
			if err := s.fillMidMessage(); err != nil {
				return err
			}
			continue
		}
		k := min(n, len(s.r.unread()))
		s.r.consume(k)
		n -= k
	}
	return nil
}

// replay state: a request sent on a connection that turns out to be dead before it answered
// anything is sent again on another one, from the client's own bytes, which the read buffer
// keeps from the message that attached the connection until the first answer arrives.
type replayState struct {
	armed bool
	count int32 // replays of the current request
}

func (s *session) armReplay(start int) {
	if start < 0 {
		return
	}
	s.replay.armed = true
	s.r.keep = start
}

// disarmReplay: the request got its first answer (or cannot be replayed).
func (s *session) disarmReplay() {
	s.replay.armed = false
	s.replay.count = 0
	s.r.keep = -1
}

// replayable reports whether the request can still move to another connection. Every
// connection the pool held may have been terminated at once, so a request may meet several;
// each is dropped, so the count stays below the pool's size plus one fresh connection.
func (s *session) replayable() bool {
	return s.replay.armed && s.r.keep >= 0 && int(s.replay.count) <= s.proxy.Pool.Settings().Size
}

// replayOnFreshConnection drops the dead connection and rewinds the client's bytes to the
// message that attached it; the loop then handles them again and borrows another connection.
func (s *session) replayOnFreshConnection() {
	u := s.srv
	start, count := s.r.keep, s.replay.count
	s.disarmReplay()
	s.replay.count = count + 1
	u.out = u.out[:0]
	u.in.discard()
	u.broken = true
	s.setLink(nil)
	s.setState(StateIdle)
	u.pc.Destroy()
	s.proxy.replays.Add(1)
	s.r.r = start
}
