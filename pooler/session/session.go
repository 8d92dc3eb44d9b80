package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/edgepool/edgepool/pooler/auth"
	"github.com/edgepool/edgepool/pooler/pool"
)

// State is where a client session is in its life. Transitions:
//
//	Startup → Auth → Idle ⇄ Waiting → Active → Idle … → Closed
//
// Idle: authenticated, no upstream connection, no buffers. Waiting: acquiring an upstream
// connection. Active: holding one (inside a transaction or with requests in flight; in
// session mode until the client leaves). Only the pump goroutine moves Active → Idle, on a
// ReadyForQuery 'I' with nothing in flight; only the client loop moves Idle → Waiting → Active
// and anything → Closed. The client loop sees the session attached and marks its next message
// in flight in one critical section of mu, so the pump never releases a connection a
// pipelined message is about to be sent on: that message finds the session Idle instead and
// attaches anew once the previous pump has written its last response.
type State int32

// Session states.
const (
	StateStartup State = iota
	StateAuth
	StateIdle
	StateWaiting
	StateActive
	StateClosed
)

var stateNames = [...]string{"startup", "auth", "idle", "waiting", "active", "closed"}

func (s State) String() string { return stateNames[s] }

const (
	stateStartup = StateStartup
	stateAuth    = StateAuth
)

// ackKind says what to do with the next ParseComplete / CloseComplete from the server. Every
// Parse and Close sent upstream queues one ack, in order, because responses come in order.
type ackKind uint8

const (
	ackForward       ackKind = iota // the client's own Parse/Close: pass the response on
	ackParseInjected                // a Parse the pooler added: swallow ParseComplete
	ackCloseInjected                // an eviction Close: swallow CloseComplete
	ackCloseAsParse                 // a Parse answered by closing noopStatement: send ParseComplete
)

type ack struct {
	kind       ackKind
	batch      uint64   // number of Syncs sent before it
	serverName string   // statement created by this Parse (unmarked if the batch fails)
	def        *stmtDef // marked verified when its ParseComplete arrives
	clientName string   // client's name for it (forgotten if the Parse fails)
}

type session struct {
	proxy  *Proxy
	conn   net.Conn
	opts   Options
	rt     *Runtime
	secure bool
	state  atomic.Int32

	r msgReader
	w msgWriter

	pid     uint32
	secret  [4]byte
	user    string
	key     auth.KeyID  // the key the client proved (checked again on reload)
	revoked atomic.Bool // the key is no longer valid: end between transactions (revoke.go)
	adm     *admission  // while logging in (admission.go)

	defaults  map[string]string // tracked parameters' values on fresh connections (shared, read-only)
	overrides map[string]string // where this client wants others (params.go); guarded by mu
	park      bool              // hand idle waits to the reactor or a fresh goroutine (ServeConnAsync)
	ctx       context.Context   // the session's context, for resuming a parked session
	parkTok   uint64            // reactor entry while parked; guarded by the reactor's mu
	closeReq  atomic.Bool       // CloseAll is closing the connection
	inHdrWait bool              // waitHeader is blocked; guarded by mu
	kicked    bool              // the pump set a deadline to end that wait; guarded by mu
	done      func(error)       // told once when the session ends
	ended     bool

	// Client-loop only.
	stmts         map[string]*stmtDef // client statement name → shared definition
	skipUntilSync bool                // after a failed acquire in an extended-protocol batch
	sbuf          *[]byte             // messages for the upstream, flushed before blocking
	out           []byte
	deadlineSet   bool

	mu           sync.Mutex // shared by the client loop and the pump
	upstream     *pool.Conn
	sconn        net.Conn // upstream socket
	pending      int      // Sync/Query/FunctionCall sent, ReadyForQuery not yet received
	inFlight     bool     // extended-protocol messages sent since the last Sync
	sentSyncs    uint64
	respBatch    uint64
	acks         []ack
	txStatus     byte
	stopping     bool // client loop asked the pump to hand the connection back
	closing      bool
	pumpFailed   bool
	pumpDone     chan struct{}
	attachedAt   time.Time
	upstreamLost bool
	failedNames  []string // client statement names whose Parse failed, forgotten by the client loop
	paramsSynced bool     // tracked parameters checked on this attachment
	injected     int      // pooler-injected simple queries (parameter SETs) whose responses are swallowed
}

func (s *session) setState(st State) { s.state.Store(int32(st)) }

// State returns the session's state.
func (s *session) State() State { return State(s.state.Load()) }

var errTerminate = errors.New("client terminated")

// endAfterError ends the session after a read or handling error. A protocol violation is
// answered with FATAL 08P01 here, with no session lock held: the pump takes the client writer's
// lock before s.mu, so writing to the client from under s.mu could deadlock.
func (s *session) endAfterError(err error) {
	if errors.Is(err, ErrProtocol) {
		s.fatal("08P01", err.Error())
	}
	s.end(s.finish(err), true)
}

// loop is the client loop: read a message, make sure an upstream connection is attached when
// the message needs one, forward it. In park mode it hands the wait for the next message to a
// fresh goroutine whenever the session is idle and returns.
func (s *session) loop(ctx context.Context) {
	for {
		if !s.r.buffered() {
			if err := s.flushUpstream(); err != nil {
				s.end(s.finish(err), true)
				return
			}
			idle, stop := s.prepareBlockingRead()
			if stop {
				s.fatal("57P01", s.endNotice())
				s.end(s.finish(errors.New("draining")), true)
				return
			}
			if s.park && !s.r.hdrReady && s.r.hdrErr == nil {
				if idle && s.r.hdrN == 0 {
					s.parkIdle()
					return
				}
				if !s.waitHeader() {
					continue // detached meanwhile: park instead
				}
			}
		}
		typ, body, err := s.r.next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if retry := s.onReadTimeout(); retry {
					continue
				}
			}
			s.endAfterError(err)
			return
		}
		if err := s.handle(ctx, typ, body); err != nil {
			s.endAfterError(err)
			return
		}
		if s.sbuf != nil && len(s.out) > 64<<10 {
			if err := s.flushUpstream(); err != nil {
				s.end(s.finish(err), true)
				return
			}
		}
	}
}

// waitHeader waits for the next header while attached (or with a partial header), where the
// pump may detach meanwhile: it then kicks this read with a deadline so the loop parks
// instead of idling on this goroutine's grown stack. It reports false, without reading, when
// the session is already detached.
func (s *session) waitHeader() bool {
	s.mu.Lock()
	if s.upstream == nil && s.r.hdrN == 0 {
		s.mu.Unlock()
		return false
	}
	s.inHdrWait = true
	s.mu.Unlock()
	s.r.readHeader()
	s.mu.Lock()
	s.inHdrWait = false
	if s.kicked {
		s.kicked = false
		if s.r.hdrReady && !s.ending() {
			// The header made it: the body must not hit the kick's deadline.
			s.deadlineSet = false
			_ = s.conn.SetReadDeadline(time.Time{})
		}
	}
	s.mu.Unlock()
	return true
}

// resume waits, on a fresh small stack, for the next message header of an idle session, then
// carries on with the client loop. The reactor calls it once the socket is readable.
func (s *session) resume() {
	defer func() {
		if r := recover(); r != nil {
			s.onPanic(r)
		}
	}()
	if !s.ending() { // draining or revoked: the loop ends an idle session without reading
		s.r.readHeader()
	}
	s.loop(s.ctx)
}

// prepareBlockingRead sets the read deadline for the coming wait and reports whether the
// session should end instead (draining while idle).
func (s *session) prepareBlockingRead() (idle, stop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upstream == nil {
		if s.ending() {
			return true, true
		}
		if s.deadlineSet {
			_ = s.conn.SetReadDeadline(time.Time{})
			s.deadlineSet = false
		}
		s.r.release()
		return true, false
	}
	if !s.rt.SessionMode && s.rt.IdleTransactionTimeout > 0 {
		_ = s.conn.SetReadDeadline(time.Now().Add(s.rt.IdleTransactionTimeout))
		s.deadlineSet = true
	}
	return false, false
}

// onReadTimeout decides what a read deadline means: drain kick, idle-in-transaction timeout,
// or just a long query (keep waiting).
func (s *session) onReadTimeout() (retry bool) {
	s.mu.Lock()
	attached := s.upstream != nil
	idleInTx := attached && s.pending <= 0 && !s.inFlight && s.txStatus != 'I'
	revokedBetweenTx := s.revokedBetweenTx()
	s.mu.Unlock()
	switch {
	case !attached && s.ending(), revokedBetweenTx:
		s.fatal("57P01", s.endNotice())
		return false
	case idleInTx:
		s.fatal("25P03", "terminating connection due to idle-in-transaction timeout")
		return false
	case attached, s.r.hdrCut:
		// A long query; or, detached, a kick after the pump let go or an idle-in-transaction
		// deadline left from before: keep waiting, without a deadline. (Detached, only a cut
		// header wait is resumable; a cut body is not.)
		s.mu.Lock()
		s.deadlineSet = false
		_ = s.conn.SetReadDeadline(time.Time{})
		s.mu.Unlock()
		return true
	}
	return false
}

// kickIfIdle wakes an idle session's blocking read (or resumes it from the reactor) so it
// notices the drain.
func (s *session) kickIfIdle() {
	s.mu.Lock()
	idle := s.upstream == nil
	if idle {
		s.deadlineSet = true
		_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	}
	s.mu.Unlock()
	if idle {
		s.wake()
	}
}

func (s *session) handle(ctx context.Context, typ byte, body []byte) error {
	if typ == 'X' {
		return errTerminate
	}
	if err := checkMessage(typ, body); err != nil {
		return err // garbage never reaches (or takes) an upstream connection
	}
	if s.skipUntilSync {
		if typ == 'S' {
			s.skipUntilSync = false
			return s.w.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		}
		return nil
	}
	s.mu.Lock()
	if s.upstreamLost {
		s.mu.Unlock()
		return errors.New("upstream connection lost")
	}
	if s.upstream != nil {
		// Attached: forward under the lock that saw the connection. The message counts as in
		// flight before the pump can look again, so a pipelining client's next message never
		// meets a connection the pump released after the previous transaction.
		defer s.mu.Unlock()
		return s.forwardLocked(typ, body)
	}
	done := s.pumpDone
	s.mu.Unlock()
	if done != nil {
		<-done // the previous pump has written its last response
	}
	switch typ {
	case 'S':
		return s.w.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	case 'H':
		return nil
	case 'C':
		// Nothing is open between transactions but the client's statement names.
		if len(body) > 1 && body[0] == 'S' {
			if name, _, ok := cstringBytes(body[1:]); ok {
				delete(s.stmts, string(name))
			}
		}
		return s.w.send(&pgproto3.CloseComplete{})
	case 'd', 'c', 'f':
		return nil // PostgreSQL ignores COPY messages outside COPY, too
	case 'P':
		if done, err := s.parseLocally(body); done || err != nil {
			return err
		}
	}
	if !validFrontendType(typ) {
		return protocolError(fmt.Sprintf("invalid frontend message type %q", typ))
	}
	if err := s.attach(ctx); err != nil {
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
	return s.forward(typ, body)
}

// parseLocally answers a named Parse of a statement PostgreSQL already accepted without an
// upstream connection; it is prepared on demand at Bind/Describe.
func (s *session) parseLocally(body []byte) (bool, error) {
	name, query, oids, err := decodeParse(body)
	if err != nil {
		return false, err
	}
	if len(name) == 0 {
		return false, nil
	}
	def := s.proxy.stmts.known(query, oids)
	if def == nil || !def.verified.Load() {
		return false, nil
	}
	if old, ok := s.stmts[string(name)]; !ok || old != def {
		s.stmts[string(name)] = def
	}
	return true, s.w.send(&pgproto3.ParseComplete{})
}

func validFrontendType(t byte) bool {
	switch t {
	case 'P', 'B', 'D', 'E', 'C', 'S', 'H', 'Q', 'F', 'd', 'c', 'f', 'X':
		return true
	}
	return false
}

// attach borrows an upstream connection and starts the pump.
func (s *session) attach(ctx context.Context) error {
	s.setState(StateWaiting)
	s.proxy.waiting.Add(1)
	c, err := s.proxy.Pool.Acquire(ctx)
	s.proxy.waiting.Add(-1)
	if err != nil {
		s.setState(StateIdle)
		return err
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.upstream = c
	s.sconn = c.PgConn().Conn()
	s.pending, s.inFlight, s.sentSyncs, s.respBatch = 0, false, 0, 0
	s.acks = s.acks[:0]
	s.injected = 0
	s.paramsSynced = false
	s.txStatus = 'I'
	s.stopping, s.pumpFailed = false, false
	s.pumpDone = done
	s.attachedAt = time.Now()
	s.mu.Unlock()
	s.proxy.active.Add(1)
	s.setState(StateActive)
	go s.pump(c, done) //nolint:gosec // the pump lives as long as the borrowed connection, not a request

	return nil
}

// finish ends the session: hands the upstream connection back clean (or destroys it) and
// releases buffers.
func (s *session) finish(cause error) error {
	s.setState(StateClosed)
	s.mu.Lock()
	c, done := s.upstream, s.pumpDone
	s.closing = true
	if c == nil {
		s.mu.Unlock()
		if done != nil {
			<-done
		}
		return cleanExit(cause)
	}
	busy := s.pending > 0 || s.inFlight
	if busy {
		// A request is in flight: cancel it and drop the connection; PostgreSQL rolls back.
		s.upstream, s.sconn = nil, nil
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.PgConn().CancelRequest(ctx)
		cancel()
		_ = c.PgConn().Conn().Close()
		<-done
		c.Destroy()
		s.proxy.active.Add(-1)
		return cleanExit(cause)
	}
	s.stopping = true
	s.mu.Unlock()
	_ = c.PgConn().Conn().SetReadDeadline(time.Unix(1, 0))
	<-done
	s.mu.Lock()
	failed := s.pumpFailed
	s.upstream, s.sconn = nil, nil
	s.mu.Unlock()
	s.proxy.active.Add(-1)
	if failed {
		return cleanExit(cause)
	}
	_ = c.PgConn().Conn().SetReadDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pg := c.PgConn()
	if pg.TxStatus() != 'I' {
		if _, err := pg.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			c.Destroy()
			return cleanExit(cause)
		}
	}
	if s.rt.SessionMode {
		if _, err := pg.Exec(ctx, "DISCARD ALL").ReadAll(); err != nil {
			c.Destroy()
			return cleanExit(cause)
		}
		c.Statements().Clear()
	}
	c.Release()
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
	s.r.release()
	if s.r.buf != nil {
		putBuf(s.r.buf)
		s.r.buf = nil
	}
	s.w.mu.Lock()
	if s.w.buf != nil {
		putBuf(s.w.buf)
		s.w.buf, s.w.out = nil, nil
	}
	s.w.mu.Unlock()
	if s.sbuf != nil {
		putBuf(s.sbuf)
		s.sbuf, s.out = nil, nil
	}
}

// cancelUpstream sends a cancel request for the query running on the session's upstream
// connection. Holding mu keeps the connection attached to this session meanwhile.
func (s *session) cancelUpstream() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.upstream == nil || s.pending <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.upstream.PgConn().CancelRequest(ctx)
}

// pump relays upstream responses to the client until the transaction ends (transaction
// mode), the upstream fails, or the client loop takes the connection back.
func (s *session) pump(c *pool.Conn, done chan struct{}) {
	defer close(done)
	pg := c.PgConn()
	for {
		msg, err := pg.ReceiveMessage(context.Background())
		if err != nil {
			s.pumpError(c, err)
			return
		}
		s.mu.Lock()
		injected := s.injected > 0
		s.mu.Unlock()
		if injected {
			if !s.swallowInjected(msg) {
				return
			}
			continue
		}
		s.w.mu.Lock()
		flush := false
		switch m := msg.(type) {
		case *pgproto3.ParameterStatus:
			if name, ok := trackedName(m.Name); ok {
				s.mu.Lock()
				s.track(name, m.Value) // the client's own SET follows it to later connections
				s.mu.Unlock()
			}
			_ = s.w.encode(m)
		case *pgproto3.ReadyForQuery:
			_ = s.w.encode(m)
			s.mu.Lock()
			s.pending--
			s.respBatch++
			s.txStatus = m.TxStatus
			// Not when finish has taken the connection to cancel and destroy it (client gone
			// with a request in flight): releasing it too would hand a dying connection on.
			detach := s.pending <= 0 && !s.inFlight && m.TxStatus == 'I' && !s.rt.SessionMode && !s.stopping &&
				s.upstream == c
			if detach {
				s.upstream, s.sconn = nil, nil
				if s.ending() || (s.park && s.inHdrWait) {
					// Wake the client loop: to end (draining) or to park its idle wait.
					s.deadlineSet = true
					s.kicked = s.inHdrWait
					_ = s.conn.SetReadDeadline(time.Unix(1, 0))
				}
			} else if s.revokedBetweenTx() {
				s.deadlineSet = true // session mode: the revoked session ends now (revoke.go)
				_ = s.conn.SetReadDeadline(time.Unix(1, 0))
			}
			attachedAt := s.attachedAt
			quiet := s.pending <= 0
			s.mu.Unlock()
			if detach {
				// Nothing more is read from the connection: hand it on before the client even
				// sees its ReadyForQuery.
				s.proxy.Observer.Transaction(time.Since(attachedAt))
				s.proxy.active.Add(-1)
				s.setState(StateIdle)
				c.Release()
			}
			_ = s.w.flush(detach || quiet)
			s.w.mu.Unlock()
			if detach {
				return
			}
			continue
		case *pgproto3.ParseComplete:
			a, ok := s.takeAck(c, "ParseComplete")
			if !ok {
				return
			}
			if a.def != nil {
				a.def.verified.Store(true)
			}
			if a.kind != ackParseInjected {
				_ = s.w.encode(m)
			}
		case *pgproto3.CloseComplete:
			a, ok := s.takeAck(c, "CloseComplete")
			if !ok {
				return
			}
			switch a.kind {
			case ackCloseInjected:
			case ackCloseAsParse:
				_ = s.w.encode(&pgproto3.ParseComplete{})
			default:
				_ = s.w.encode(m)
			}
		case *pgproto3.ErrorResponse:
			s.mu.Lock()
			s.dropFailedBatch(c)
			s.mu.Unlock()
			s.proxy.Observer.ServerError(m.Code)
			_ = s.w.encode(m)
		case *pgproto3.CopyInResponse, *pgproto3.CopyBothResponse:
			_ = s.w.encode(m)
			flush = true
		default:
			_ = s.w.encode(m)
		}
		s.mu.Lock()
		quiet := s.pending <= 0 // responses to a Flush, or asynchronous messages: nothing else is coming
		s.mu.Unlock()
		if flush || quiet || s.w.pending() > 32<<10 {
			if err := s.w.flush(quiet); err != nil {
				_ = s.conn.Close() // the client loop notices and cleans up
			}
		}
		s.w.mu.Unlock()
	}
}

// swallowInjected consumes the responses to a pooler-injected parameter SET. An error there
// (a bad value the client asked for at startup) ends the session, as PostgreSQL would have
// refused the connection. It reports whether the pump should go on.
func (s *session) swallowInjected(msg pgproto3.BackendMessage) bool {
	switch m := msg.(type) {
	case *pgproto3.ReadyForQuery:
		s.mu.Lock()
		s.injected--
		s.pending--
		s.respBatch++
		s.txStatus = m.TxStatus
		s.mu.Unlock()
	case *pgproto3.ErrorResponse:
		s.mu.Lock()
		s.upstreamLost = true
		s.mu.Unlock()
		s.fatal(m.Code, m.Message)
		_ = s.conn.Close()
	}
	return true
}

// pumpError handles an upstream read failure: a requested stop hands the connection back;
// anything else destroys it and ends the client session.
// takeAck pops the acknowledgement the pump expects for an upstream ParseComplete or
// CloseComplete. Called with w.mu held; when there is none, the upstream is out of step: it
// releases w.mu, ends the pump with an error and reports false.
func (s *session) takeAck(c *pool.Conn, what string) (ack, bool) {
	s.mu.Lock()
	a, ok := s.popAck()
	s.mu.Unlock()
	if !ok {
		s.w.mu.Unlock()
		s.pumpError(c, errors.New("unexpected "+what+" from upstream"))
	}
	return a, ok
}

func (s *session) pumpError(c *pool.Conn, err error) {
	s.mu.Lock()
	var ne net.Error
	if s.stopping && errors.As(err, &ne) && ne.Timeout() {
		s.mu.Unlock()
		return
	}
	closing := s.closing
	s.pumpFailed = true
	if s.upstream == c {
		s.upstream, s.sconn = nil, nil
		s.upstreamLost = true
		s.proxy.active.Add(-1)
	}
	s.mu.Unlock()
	c.Destroy()
	if closing {
		return
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		s.sendError(pgErr, "")
	} else {
		s.fatal("08006", "server connection lost")
	}
	s.proxy.Log.Debug("upstream connection failed", "err", err)
	_ = s.conn.Close()
}

func (s *session) popAck() (ack, bool) {
	if len(s.acks) == 0 {
		return ack{}, false
	}
	a := s.acks[0]
	s.acks = s.acks[1:]
	return a, true
}

// dropFailedBatch forgets the acks of the batch an ErrorResponse aborted: PostgreSQL skips
// the rest of it until Sync. Statements those Parses would have created do not exist.
func (s *session) dropFailedBatch(c *pool.Conn) {
	for len(s.acks) > 0 && s.acks[0].batch == s.respBatch {
		a := s.acks[0]
		s.acks = s.acks[1:]
		if a.serverName != "" {
			c.Statements().Remove(a.serverName)
		}
		if a.clientName != "" {
			// Only the client loop touches stmts; forgetting a failed name is deferred to it.
			s.failedNames = append(s.failedNames, a.clientName)
		}
	}
}
