package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/edgepool/edgepool/pooler/pool"
)

// upstream is the relay's view of one upstream connection: its socket, the tracked parameter
// values it has, and what it has been asked and not answered yet. It is kept with the
// connection (pool.Conn.SetRelay) across borrows and used by one session at a time.
//
// The relay reads and writes the socket itself, by message header, between ReadyForQuery
// messages; pgconn (which the pool, the HTTP transport and the clean-up path use) is idle then,
// with nothing buffered.
type upstream struct {
	pc   *pool.Conn
	conn net.Conn

	params   [len(trackedParams)]string // tracked parameter values on this connection
	paramsAt uint64                     // pool.Conn direct uses when params were read

	// queue holds the requests sent and not answered yet, in order (responses come in order).
	queue []request
	head  int
	// owed is how many requests at the head of the queue the server answers without more
	// input: those up to the last Sync, simple Query, FunctionCall or Flush sent.
	owed int
	// skipping: an error in an extended-protocol batch made the server skip everything up to
	// the next Sync; the relay drops what the client sends meanwhile.
	skipping bool
	// unsynced: extended-protocol messages were sent since the last Sync; the server holds the
	// batch (and its implicit transaction) open until the Sync.
	unsynced bool
	// copyIn: the server is in COPY FROM STDIN, reading the client's CopyData.
	copyIn   bool
	txStatus byte
	// broken: out of step with the server (or its socket failed); never released.
	broken bool

	// The relay's buffers, kept with the connection (the pool has few): what the server sent,
	// and the requests forwarded but not yet written.
	in  upReader
	out []byte
	// sock: the plain TCP socket, which the relay loop may take out of Go's netpoller (nil
	// over TLS); raw: its reads and writes without the scheduler's system-call bookkeeping, for
	// the socket as it is in the netpoller now (rawIO).
	sock *pool.Sock
	raw  *rawSock
	// syncedTo is the set of tracked parameter values the connection was last brought to
	// (syncParams); nil when unknown.
	syncedTo *paramSet

	// Of the current borrow: since when (for the transaction-duration metric), the session
	// mode watcher (watch.go), whether the server's own FATAL reached the client.
	attachedAt   time.Time
	watch        *watcher
	fatalRelayed bool

	// The relay loop's view of the socket (evloop_linux.go): its descriptor + 1 as the loop
	// last took it (pool.Sock.Detach), a reader of it, and the loop session holding it (nil
	// when none does).
	loopFD    int
	loopIn    fdReader
	loopOwner atomic.Pointer[session]
}

// reqKind is what a request sent upstream expects as its completing response.
type reqKind uint8

const (
	reqParse         reqKind = iota // client's Parse: ParseComplete passed on
	reqParseInjected                // pooler's Parse ahead of a Bind/Describe: ParseComplete swallowed
	reqParseAsClose                 // client's Parse of a statement the connection has, sent as a Close of noopStatement: CloseComplete turned into ParseComplete
	reqClose                        // client's Close: CloseComplete passed on
	reqCloseInjected                // eviction of a statement from the connection: CloseComplete swallowed
	reqBind                         // BindComplete
	reqDescribe                     // RowDescription or NoData (after ParameterDescription for a statement)
	reqExecute                      // CommandComplete, EmptyQueryResponse or PortalSuspended
	reqSync                         // ReadyForQuery
	reqQuery                        // simple Query: ReadyForQuery
	reqQueryInjected                // the pooler's parameter SET: every response swallowed
	reqFunction                     // FunctionCall: ReadyForQuery
)

type request struct {
	kind       reqKind
	def        *stmtDef // Parse: the statement it creates (forgotten if the batch fails)
	clientName string   // client's named Parse: its name (forgotten if the batch fails)
}

// upstreamOf returns the relay state of c, creating it on the connection's first relay use.
// When pgconn used the connection since the relay last did (connect, health check, clean-up,
// the HTTP transport), the socket is synced first (pgconn may still have a read pending) and
// the tracked parameters are read from pgconn, which consumed any ParameterStatus meanwhile.
func upstreamOf(ctx context.Context, c *pool.Conn) (*upstream, error) {
	st, uses := c.Relay()
	u, _ := st.(*upstream)
	if u == nil {
		u = &upstream{pc: c, conn: c.Socket(), paramsAt: ^uint64(0), out: make([]byte, 0, readBufSize)}
		u.sock, _ = u.conn.(*pool.Sock)
		u.in.buf = new(make([]byte, upstreamBufSize))
		c.SetRelay(u)
	}
	if u.paramsAt != uses {
		if err := c.Sync(ctx); err != nil {
			return nil, err
		}
		for i, name := range trackedParams {
			u.params[i] = c.ParameterStatus(name)
		}
		u.syncedTo = nil
		_, u.paramsAt = c.Relay()
	}
	u.queue, u.head, u.owed = u.queue[:0], 0, 0
	u.skipping, u.unsynced, u.copyIn, u.txStatus, u.broken, u.fatalRelayed = false, false, false, 'I', false, false
	return u, nil
}

func (u *upstream) pending() int { return len(u.queue) - u.head }

// reader and writer are the socket, raw when it can be.
func (u *upstream) reader() io.Reader {
	if raw := u.rawIO(); raw != nil {
		return raw
	}
	return u.conn
}

func (u *upstream) writer() io.Writer {
	if raw := u.rawIO(); raw != nil {
		return raw
	}
	return u.conn
}

// rawIO returns raw reads and writes of the plain TCP socket, back in Go's netpoller if the
// relay loop had taken it out; nil over TLS (or once the socket is closed).
func (u *upstream) rawIO() *rawSock {
	if u.sock == nil {
		return nil
	}
	tc := u.sock.TCP()
	if tc == nil {
		return nil
	}
	u.raw = rawSockFor(u.raw, tc)
	return u.raw
}

// push records a request sent; flush marks that the server answers everything sent so far
// without more input (after Sync, Query, FunctionCall or Flush).
func (u *upstream) push(r request) { u.queue = append(u.queue, r) }

func (u *upstream) flush() { u.owed = u.pending() }

func (u *upstream) peek() (request, bool) {
	if u.head == len(u.queue) {
		return request{}, false
	}
	return u.queue[u.head], true
}

func (u *upstream) pop() request {
	r := u.queue[u.head]
	u.queue[u.head] = request{}
	u.head++
	if u.owed > 0 {
		u.owed--
	}
	if u.head == len(u.queue) {
		u.queue, u.head = u.queue[:0], 0
	}
	return r
}

// idle reports whether the connection has nothing outstanding: it can be handed back.
func (u *upstream) idle() bool { return u.pending() == 0 && !u.copyIn && !u.broken }

// errDesync is the server answering something nobody asked: the connection cannot be trusted.
var errDesync = errors.New("upstream out of step with the relay")

// upReader buffers what the upstream sends. A message larger than what is buffered is passed
// on in pieces (stream bytes still to come), so memory does not grow with the largest row.
type upReader struct {
	buf        *[]byte
	r, w       int
	stream     int  // bytes of the current message still to come
	streamKeep bool // pass them on (false: swallow them)
}

func (u *upReader) fill(conn io.Reader) error {
	b := *u.buf
	if u.r == u.w {
		u.r, u.w = 0, 0
	} else if len(b)-u.w < 1024 {
		copy(b, b[u.r:u.w])
		u.w -= u.r
		u.r = 0
	}
	k, err := conn.Read(b[u.w:])
	u.w += k
	return readResult(k, err)
}

func (u *upReader) empty() bool { return u.r == u.w && u.stream == 0 }

// discard forgets what is buffered (the connection it came from is being dropped).
func (u *upReader) discard() { u.r, u.w, u.stream = 0, 0, 0 }

// verdict says what happens to one upstream message.
type verdict uint8

const (
	pass        verdict = iota
	swallow             // a response to something the pooler sent on its own
	asParseDone         // CloseComplete standing in for a ParseComplete
)

// relayOnce reads once from the upstream and relays what arrived.
func (s *session) relayOnce() error {
	s.enter(phaseServerWait)
	err := s.srv.in.fill(s.srv.reader())
	s.enter(phaseBusy)
	if err != nil {
		return s.upstreamFailed(err)
	}
	return s.relayBuffered(true)
}

// relayBuffered passes what the upstream sent to the client, message by message, without
// decoding what it only forwards: the type byte and length of each message decide, plus a few
// bytes of the ones that change the relay's state. Swallowed messages are cut out of the
// buffer in place (the connection's own buffer). When the chunk ends the transaction
// (transaction mode), the connection goes back to the pool right after the client write.
// publish says whether to publish the client write as the session's phase (not from session
// mode's watcher).
func (s *session) relayBuffered(publish bool) error {
	in := &s.srv.in
	b := *in.buf
	start, out := in.r, in.r
	for {
		if in.stream > 0 {
			k := min(in.stream, in.w-in.r)
			if in.streamKeep {
				out += moveDown(b, out, in.r, k)
			}
			in.r += k
			in.stream -= k
			if in.stream > 0 {
				break
			}
			continue
		}
		have := in.w - in.r
		if have < 5 {
			break
		}
		typ := b[in.r]
		n := int(int32(binary.BigEndian.Uint32(b[in.r+1:]))) - 4
		if n < 0 {
			return s.upstreamFailed(fmt.Errorf("%w: upstream message %q with length %d", errDesync, typ, n))
		}
		if want := inspectBytes(typ, n); have < 5+want {
			if 5+want > len(b) {
				return s.upstreamFailed(fmt.Errorf("%w: upstream message %q too large to inspect", errDesync, typ))
			}
			break // read more first
		}
		if s.replay.armed {
			// The first answer on this connection: a FATAL saying the backend was terminated
			// before it did anything means the request can go to another connection.
			if typ == 'E' && s.replayable() && terminatedBeforeWork(b[in.r+5:in.r+min(have, 5+n)]) {
				return errReplay
			}
			s.disarmReplay()
		}
		v, err := s.onResponse(typ, b[in.r+5:in.r+min(have, 5+n)], n)
		if err != nil {
			return s.upstreamFailed(err)
		}
		if v == asParseDone {
			b[in.r] = '1'
		}
		k := min(have, 5+n)
		if v != swallow {
			out += moveDown(b, out, in.r, k)
		}
		in.r += k
		if k < 5+n {
			in.stream, in.streamKeep = 5+n-k, v != swallow
			break
		}
	}
	detach := s.canDetach()
	if out > start {
		if err := s.writeClient(b[start:out], publish); err != nil {
			return fmt.Errorf("write client: %w", err)
		}
	}
	if detach {
		s.detach()
	}
	return nil
}

// writeClient writes relayed bytes to the client. publish: the write is the session's phase,
// which lets the janitor cut a client that does not read (a write deadline in the past); a
// deadline left from a kick that raced with the write completing is cleared and the rest
// written.
func (s *session) writeClient(b []byte, publish bool) error {
	return s.writeClientVia(s.w.write, b, publish)
}

// writeClientVia is writeClient through write (the relay loop's hand-off writes bytes crypto/tls
// already encrypted straight to the socket under it).
func (s *session) writeClientVia(write func([]byte) (int, error), b []byte, publish bool) error {
	for {
		if publish {
			s.enter(phaseClientWrite)
		}
		n, err := write(b)
		ph, since := s.activity.get()
		if publish {
			s.enter(phaseBusy)
		}
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
		if reason, at := s.takeKick(); reason == kickStall && at == kickStamp(ph, since) {
			return fmt.Errorf("client stopped reading for clientStallTimeout (%s): %w", s.rt.ClientStallTimeout, err)
		}
		_ = s.conn.SetWriteDeadline(time.Time{})
		b = b[n:]
	}
}

// moveDown moves b[from:from+k] to b[to:] (to <= from) and returns k; usually nothing moves.
func moveDown(b []byte, to, from, k int) int {
	if to != from {
		copy(b[to:], b[from:from+k])
	}
	return k
}

// inspectBytes is how much of a message's body the relay must see before passing it on.
func inspectBytes(typ byte, n int) int {
	switch typ {
	case 'Z', 'S':
		if n <= 1024 {
			return n
		}
	case 'E':
		return min(n, 512) // severity and SQLSTATE come first
	}
	return 0
}

// onResponse applies one upstream message (body: its buffered part, n: its length) to the
// relay's state and says whether the client gets it.
func (s *session) onResponse(typ byte, body []byte, n int) (verdict, error) {
	u := s.srv
	head, _ := u.peek()
	if u.pending() > 0 && head.kind == reqQueryInjected {
		return s.onInjectedResponse(typ, body, n)
	}
	switch typ {
	case '1': // ParseComplete
		r, err := s.complete(typ, reqParse, reqParseInjected)
		if err != nil {
			return pass, err
		}
		if r.def != nil {
			r.def.verified.Store(true)
		}
		if r.kind == reqParseInjected {
			return swallow, nil
		}
	case '3': // CloseComplete
		r, err := s.complete(typ, reqClose, reqCloseInjected, reqParseAsClose)
		if err != nil {
			return pass, err
		}
		switch r.kind {
		case reqCloseInjected:
			return swallow, nil
		case reqParseAsClose:
			return asParseDone, nil
		}
	case '2': // BindComplete
		if _, err := s.complete(typ, reqBind); err != nil {
			return pass, err
		}
	case 'n': // NoData
		if _, err := s.complete(typ, reqDescribe); err != nil {
			return pass, err
		}
	case 'T': // RowDescription: completes a Describe; inside a simple Query it is just a result
		if head.kind == reqDescribe && u.pending() > 0 {
			u.pop()
		}
	case 'C', 'I', 's': // CommandComplete, EmptyQueryResponse, PortalSuspended
		if head.kind == reqExecute && u.pending() > 0 {
			u.pop()
		}
	case 'G': // CopyInResponse: the server now reads the client's CopyData
		u.copyIn = true
		s.dropSyncsDuringCopy()
	case 'W': // CopyBothResponse (replication): never started through the pooler
		return pass, fmt.Errorf("%w: CopyBothResponse", errDesync)
	case 'E':
		if bytes.Contains(body, []byte("SFATAL\x00")) {
			s.srv.fatalRelayed = true
		}
		s.proxy.Observer.ServerError(errorCode(body))
		switch {
		case u.pending() == 0:
			// Outside any request: the server says goodbye (FATAL) or warns; pass it on.
		case head.kind == reqQuery || head.kind == reqFunction:
			// ReadyForQuery follows.
		default:
			s.failBatch()
		}
	case 'Z': // ReadyForQuery
		if n != 1 {
			return pass, fmt.Errorf("%w: ReadyForQuery of %d bytes", errDesync, n)
		}
		if _, err := s.complete(typ, reqSync, reqQuery, reqQueryInjected, reqFunction); err != nil {
			return pass, err
		}
		u.txStatus = body[0]
	case 'S': // ParameterStatus
		s.trackServerParam(body, n, false)
	case 'K', 'R', 'v': // BackendKeyData, Authentication, NegotiateProtocolVersion: startup only
		return pass, fmt.Errorf("%w: unexpected %q", errDesync, typ)
	}
	// Anything else (DataRow, ParameterDescription, COPY out, notices, notifications) passes.
	return pass, nil
}

// onInjectedResponse handles the answers to the pooler's own parameter SET: all swallowed; the
// parameters it reports are the connection's new values.
func (s *session) onInjectedResponse(typ byte, body []byte, n int) (verdict, error) {
	switch typ {
	case 'E':
		// A startup parameter PostgreSQL refused: as PostgreSQL would, refuse the client.
		s.proxy.Observer.ServerError(errorCode(body))
		return swallow, &injectedSetError{code: errorCode(body), msg: errorField(body, 'M')}
	case 'Z':
		if n != 1 {
			return pass, fmt.Errorf("%w: ReadyForQuery of %d bytes", errDesync, n)
		}
		s.srv.pop()
		s.srv.txStatus = body[0]
	case 'S':
		s.trackServerParam(body, n, true)
	}
	return swallow, nil
}

// complete pops the request a completing response answers; it must be one of kinds.
func (s *session) complete(typ byte, kinds ...reqKind) (request, error) {
	u := s.srv
	head, ok := u.peek()
	if ok {
		for _, k := range kinds {
			if head.kind == k {
				return u.pop(), nil
			}
		}
	}
	if !ok {
		return request{}, fmt.Errorf("%w: %q with no request outstanding", errDesync, typ)
	}
	return request{}, fmt.Errorf("%w: %q while expecting the answer to %v", errDesync, typ, head.kind)
}

// failBatch handles an ErrorResponse to an extended-protocol request: PostgreSQL skips the rest
// of the batch up to Sync, so the requests up to it get no answer, and the statements their
// Parses would have created do not exist.
func (s *session) failBatch() {
	u := s.srv
	for {
		r, ok := u.peek()
		if !ok {
			// No Sync sent yet: what the client sends until its Sync is skipped too.
			u.skipping = true
			return
		}
		if r.kind == reqSync {
			return
		}
		u.pop()
		if r.def != nil {
			u.pc.Statements().Remove(r.def.serverName)
			s.proxy.stmts.forget(r.def)
		}
		if r.clientName != "" && s.stmts[r.clientName] == r.def {
			delete(s.stmts, r.clientName)
		}
	}
}

// dropSyncsDuringCopy forgets the Syncs sent after the COPY's Execute: PostgreSQL ignores
// Sync and Flush while it reads COPY data (libpq sends them without knowing the statement was
// a COPY, and sends its Sync again after CopyDone).
func (s *session) dropSyncsDuringCopy() {
	u := s.srv
	if u.pending() <= 1 {
		return
	}
	keep := u.queue[:u.head+1]
	for _, r := range u.queue[u.head+1:] {
		if r.kind != reqSync {
			keep = append(keep, r)
		}
	}
	clear(u.queue[len(keep):])
	u.queue = keep
	u.owed = min(u.owed, u.pending())
}

// trackServerParam records a tracked parameter a ParameterStatus (body, n bytes) reports: the
// connection's value, and when the client changed it itself (not the pooler's injected SET),
// the client's wish.
func (s *session) trackServerParam(body []byte, n int, injected bool) {
	if len(body) != n {
		return // too long to be one of them
	}
	name, rest, ok := cstringBytes(body)
	if !ok {
		return
	}
	value, _, ok := cstringBytes(rest)
	if !ok {
		return
	}
	for i, t := range trackedParams {
		if string(name) == t {
			if s.srv.params[i] != string(value) {
				s.srv.params[i] = string(value)
			}
			if !injected {
				s.track(t, s.srv.params[i])
				s.srv.syncedTo = nil // the client's own SET: its wishes changed
			}
			return
		}
	}
}

// errorCode returns the SQLSTATE of an ErrorResponse body (or its buffered prefix).
func errorCode(body []byte) string { return errorField(body, 'C') }

func errorField(body []byte, field byte) string {
	for len(body) > 0 && body[0] != 0 {
		f := body[0]
		v, rest, ok := cstringBytes(body[1:])
		if !ok {
			return ""
		}
		if f == field {
			return string(v)
		}
		body = rest
	}
	return ""
}

// terminatedBeforeWork reports whether an ErrorResponse is a FATAL saying the backend was shut
// down (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now). As the first
// thing a connection answers, it means nothing of the request ran: any result would have been
// sent before the FATAL.
func terminatedBeforeWork(body []byte) bool {
	code := errorCode(body)
	return len(code) == 5 && code[:4] == "57P0" && code[4] >= '1' && code[4] <= '3' &&
		bytes.Contains(body, []byte("SFATAL\x00"))
}

// injectedSetError is PostgreSQL refusing a parameter value the client asked for at startup.
type injectedSetError struct{ code, msg string }

func (e *injectedSetError) Error() string { return "startup parameter refused: " + e.msg }

func (k reqKind) String() string {
	names := [...]string{"Parse", "injected Parse", "Parse (as Close)", "Close", "injected Close", "Bind",
		"Describe", "Execute", "Sync", "Query", "injected SET", "FunctionCall"}
	if int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("reqKind(%d)", k)
}
